"""Per-session directories: creation, ownership, change detection and size.

Why on the server side: listing what a run created or changed, and measuring the
workspace against its quota, must not trust the worker. Only `lstat` is used, never
following symlinks the code may have planted (e.g. a link to /etc/shadow).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Stop walking after this many entries: change detection is best effort on huge trees.
MAX_ENTRIES = 20_000

Snapshot = dict[str, tuple[int, int]]


@dataclass
class SessionDirs:
    """`root` holds `workspace` (the code's cwd and only persistent writable dir) and `tmp`."""

    root: Path
    workspace: Path
    tmp: Path

    @classmethod
    def create(cls, base: Path | None, uid: int | None) -> SessionDirs:
        base = base or default_base()
        root = Path(tempfile.mkdtemp(prefix="s-", dir=base))
        workspace, tmp = root / "workspace", root / "tmp"
        for path in (workspace, tmp):
            path.mkdir(mode=0o700)
        if uid is not None:
            for path in (root, workspace, tmp):
                os.chown(path, uid, uid)
        os.chmod(root, 0o700)
        # Traversable: under bubblewrap it is /tmp, and an interpreter installed under /tmp
        # is bound inside it, which bwrap (root without capabilities) must reach to exec.
        # Other uids still cannot get here: `root` is 0700.
        os.chmod(tmp, 0o711)
        return cls(root, workspace, tmp)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def default_base() -> Path:
    """A server-wide parent directory that others may traverse but not list (0711)."""
    base = Path(tempfile.gettempdir()) / f"codeact-sandbox-{os.getuid()}"
    base.mkdir(mode=0o711, exist_ok=True)
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise PermissionError(f"{base} is not a directory owned by us; refusing to use it")
    os.chmod(base, 0o711)
    return base


def snapshot(directory: Path) -> tuple[Snapshot, int]:
    """(relative path -> (mtime_ns, size)) for regular files, plus the total bytes used."""
    files: Snapshot = {}
    total = 0
    stack = [str(directory)]
    prefix = len(str(directory)) + 1
    seen = 0
    while stack and seen < MAX_ENTRIES:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
            elif stat.S_ISREG(info.st_mode):
                files[entry.path[prefix:]] = (info.st_mtime_ns, info.st_size)
                total += info.st_blocks * 512
    return files, total


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    """Paths created or modified between two snapshots, sorted."""
    return sorted(path for path, meta in after.items() if before.get(path) != meta)


def disk_usage(*directories: Path) -> int:
    """Bytes allocated under the given directories (best effort, no symlinks followed)."""
    return sum(snapshot(directory)[1] for directory in directories)
