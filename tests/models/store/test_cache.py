"""The hub-cache layout, lock and free-space check that pull and bundle import share."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import try_to_load_from_cache

from models.errors import PullError
from models.store import cache
from models.store.cache import RepoCache, check_free_space, is_sha256

SHA = "a" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_a_file_laid_out_by_repo_cache_is_found_by_huggingface_hub(tmp_path: Path) -> None:
    repo = RepoCache(tmp_path, "org/model-GGUF")
    assert repo.root == tmp_path / "models--org--model-GGUF"
    repo.blob(SHA).parent.mkdir(parents=True)
    repo.blob(SHA).write_bytes(b"GGUF")
    repo.ref("main").parent.mkdir(parents=True)
    repo.ref("main").write_text(COMMIT)
    link = repo.snapshots / COMMIT / "model.gguf"
    link.parent.mkdir(parents=True)
    link.symlink_to(repo.blob(SHA))
    found = try_to_load_from_cache("org/model-GGUF", "model.gguf", cache_dir=tmp_path)
    assert isinstance(found, str) and Path(found).resolve() == repo.blob(SHA)


def test_one_blob_is_written_by_one_holder_at_a_time(tmp_path: Path) -> None:
    """Two writers of the same blob (a pull and an import) each build their own RepoCache:
    the second waits for the first to let go."""
    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with RepoCache(tmp_path, "org/m").blob_lock(SHA):
            held.set()
            time.sleep(0.3)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    assert held.wait(10)
    with RepoCache(tmp_path, "org/m").blob_lock(SHA):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]
    assert (tmp_path / ".locks" / "models--org--m" / f"{SHA}.codeact.lock").exists()


def test_free_space_is_checked_with_the_callers_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda _: SimpleNamespace(total=0, used=0, free=1_000_000_000))
    check_free_space(tmp_path, 1_000_000_000, PullError)  # exactly fits: no error
    with pytest.raises(PullError) as info:
        check_free_space(tmp_path, 2_500_000_000, lambda why: PullError(f"cannot download x: {why}"), more=True)
    assert str(info.value) == (
        f"cannot download x: it needs 2.50 GB more but {tmp_path} has 1.00 GB free; "
        "free some space or point HF_HOME / HF_HUB_CACHE elsewhere"
    )


def test_sha256_names() -> None:
    assert is_sha256(SHA)
    assert not is_sha256(SHA.upper()) and not is_sha256(SHA[:-1]) and not is_sha256(COMMIT)
