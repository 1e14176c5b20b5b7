"""The Hugging Face hub cache as this project writes into it: a repo's folder, the lock per
blob, and room for the bytes before the first one is written.

``pull`` (downloads) and ``bundle`` (air-gap imports) both put files where
huggingface_hub itself would (``models--org--name/{blobs,refs,snapshots}``, a blob named by
its sha256), so each finds what the other left and ``resolve_model`` finds both. They
also take the same lock file for the same blob, so a pull and an import of one file never
interleave. Both check free space first: failing at 95 % of a 4 GB file is the worse way
to find out the disk is full.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import WeakFileLock

from models.errors import ModelError

__all__ = ["RepoCache", "check_free_space", "is_sha256"]

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
LOCK_SUFFIX = ".codeact.lock"


def is_sha256(text: str) -> bool:
    """Whether ``text`` is a lowercase hex sha256: a blob's name, an LFS etag, a manifest's hash."""
    return _SHA256_RE.fullmatch(text) is not None


@dataclass(frozen=True)
class RepoCache:
    """One model repo's folder in the hub cache at ``cache_dir``."""

    cache_dir: Path
    repo_id: str

    @property
    def root(self) -> Path:
        """``<cache_dir>/models--org--name``, huggingface_hub's own folder name."""
        return self.cache_dir / repo_folder_name(repo_id=self.repo_id, repo_type="model")

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    def blob(self, name: str) -> Path:
        """A blob, named by the sha256 (or etag) of its bytes."""
        return self.root / "blobs" / name

    def ref(self, revision: str) -> Path:
        """The file naming the commit that ``revision`` (a branch or tag) points at."""
        return self.root / "refs" / revision

    @contextmanager
    def blob_lock(self, name: str) -> Iterator[None]:
        """Hold the lock of one blob while it is written or linked (ours, beside the hub's own locks)."""
        lock = self.cache_dir / ".locks" / self.root.name / f"{name}{LOCK_SUFFIX}"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with WeakFileLock(lock):
            yield


def check_free_space(folder: Path, need: int, error: Callable[[str], ModelError], *, more: bool = False) -> None:
    """Raise ``error(why)`` when ``need`` bytes do not fit in ``folder``.

    ``why`` says how much is needed (``more`` when part of the file is already there) and
    how much is free, and names the fix; the caller's error says what could not be done.
    """
    free = shutil.disk_usage(folder).free
    if free < need:
        raise error(
            f"it needs {need / 1e9:.2f} GB{' more' if more else ''} but {folder} has {free / 1e9:.2f} GB free; "
            "free some space or point HF_HOME / HF_HUB_CACHE elsewhere"
        )
