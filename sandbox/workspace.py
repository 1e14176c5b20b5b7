"""Per-session directories: creation, ownership, change detection and size.

Why on the server side: listing what a run created or changed, and measuring the
workspace against its quota, must not trust the worker. Only `lstat` is used, never
following symlinks the code may have planted (e.g. a link to /etc/shadow), and downloads
open files with `open_file`, which follows no link on any component.
"""

from __future__ import annotations

import errno
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


class UnsafePath(ValueError):
    """A requested workspace path is absolute, climbs out (``..``), or passes through a link."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_file(workspace: Path, relative: str) -> tuple[int, os.stat_result]:
    """Open a regular file inside `workspace` for reading, never following a link.

    Why a walk with ``openat``: agent code may still be running while its files are
    downloaded, and may swap a checked file (or any directory on its path, or the workspace
    itself) for a symlink to /etc/shadow between a check and an open. Here every component,
    the workspace included, is opened with O_NOFOLLOW relative to the previous one's fd, so
    what is opened is what was checked. O_NONBLOCK: a FIFO planted there must not hang the
    server; it is refused as not a regular file.

    Returns (fd, its stat) for the caller to read and close. Raises `UnsafePath` for an
    absolute path, ``..`` or a link anywhere on the way, FileNotFoundError when there is no
    regular file at that path.
    """
    parts = relative.split("/")
    if relative.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise UnsafePath(f"not a plain relative path: {relative!r}")
    try:
        fd = os.open(workspace, _DIR_FLAGS)
    except OSError as exc:
        raise _refusal(exc, str(workspace)) from exc
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refusal(exc, relative, _is_link(part, fd)) from exc
            os.close(fd)
            fd = next_fd
        try:
            file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        except OSError as exc:
            raise _refusal(exc, relative) from exc
    finally:
        os.close(fd)
    info = os.fstat(file_fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(file_fd)
        raise FileNotFoundError(f"not a regular file: {relative!r}")
    return file_fd, info


def _is_link(name: str, dir_fd: int) -> bool:
    """Only to word the refusal (a directory symlink fails O_DIRECTORY|O_NOFOLLOW with ENOTDIR)."""
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _refusal(exc: OSError, path: str, link: bool = False) -> Exception:
    """O_NOFOLLOW met a symlink: ELOOP on Linux and macOS, EMLINK on FreeBSD. Anything else
    (ENOENT, ENOTDIR, EACCES) means there is no such file for us to serve."""
    if link or exc.errno in (errno.ELOOP, errno.EMLINK):
        return UnsafePath(f"{path!r} passes through a symbolic link")
    return FileNotFoundError(f"no file {path!r}")


def disk_usage(*directories: Path) -> int:
    """Bytes allocated under the given directories (best effort, no symlinks followed)."""
    return sum(snapshot(directory)[1] for directory in directories)
