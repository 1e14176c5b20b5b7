"""GGUF validation: every bad file gives one line naming the file and the fix."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from models.errors import ChecksumError, ModelFileError
from models.store.gguf_file import HashCache, read_gguf_header, read_gguf_metadata, validate_gguf
from models.store.local import embedded_model_path


def _one_line(exc: pytest.ExceptionInfo[BaseException], path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def test_reads_metadata_of_a_real_gguf(tiny_gguf: Path) -> None:
    meta = read_gguf_metadata(tiny_gguf)
    assert meta["general.architecture"] == "llama"
    assert meta["general.name"] == "tiny"
    assert meta["llama.context_length"] == 2048
    assert meta["llama.block_count"] == 2
    assert "<|im_start|>" in meta["tokenizer.chat_template"]
    assert "tokenizer.ggml.tokens" not in meta  # long arrays are left out...
    assert read_gguf_header(tiny_gguf).array_lengths["tokenizer.ggml.tokens"] == 200  # ...but counted


def test_header_data_end_matches_file_size(tiny_gguf: Path) -> None:
    info = validate_gguf(tiny_gguf)
    assert info.data_end == info.file_size == tiny_gguf.stat().st_size
    assert info.tensor_count == 2


def test_embedded_smollm2_metadata() -> None:
    meta = read_gguf_metadata(embedded_model_path())
    assert meta["llama.context_length"] == 8192
    assert "<|im_start|>" in meta["tokenizer.chat_template"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.gguf"
    with pytest.raises(ModelFileError) as exc:
        validate_gguf(path, fix="run `codeact-server pull x`")
    msg = _one_line(exc, path)
    assert "does not exist" in msg and "codeact-server pull x" in msg


def test_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"<html>not found</html>" * 10)
    with pytest.raises(ModelFileError) as exc:
        validate_gguf(path)
    assert "not a GGUF file" in _one_line(exc, path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError) as exc:
        validate_gguf(path)
    assert "truncated" in _one_line(exc, path)


def test_truncated_inside_header(tmp_path: Path, tiny_gguf_bytes: bytes) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(tiny_gguf_bytes[:300])
    with pytest.raises(ModelFileError) as exc:
        validate_gguf(path)
    assert "truncated" in _one_line(exc, path)


def test_truncated_tensor_data(tmp_path: Path, tiny_gguf_bytes: bytes) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(tiny_gguf_bytes[:-1000])
    with pytest.raises(ModelFileError) as exc:
        validate_gguf(path)
    msg = _one_line(exc, path)
    assert f"truncated ({len(tiny_gguf_bytes) - 1000} of {len(tiny_gguf_bytes)} bytes" in msg


def test_size_differs_from_expected(tiny_gguf: Path) -> None:
    size = tiny_gguf.stat().st_size
    with pytest.raises(ModelFileError) as exc:
        validate_gguf(tiny_gguf, expected_size=size + 10)
    assert f"truncated ({size} of {size + 10} bytes)" in _one_line(exc, tiny_gguf)


def test_checksum_mismatch_on_full_hash(tiny_gguf: Path) -> None:
    with pytest.raises(ChecksumError) as exc:
        validate_gguf(tiny_gguf, expected_sha256="0" * 64, full_hash=True, fix="re-download it")
    assert "checksum" in _one_line(exc, tiny_gguf)


def test_checksum_not_computed_without_full_hash(tiny_gguf: Path) -> None:
    """A 4 GB file must not be hashed at every start: no cache entry, no hash."""
    info = validate_gguf(tiny_gguf, expected_sha256="0" * 64)
    assert info.sha256 is None


def test_hash_cache_reuses_and_invalidates(tmp_path: Path, tiny_gguf: Path) -> None:
    cache = HashCache(tmp_path / "state" / "verified.json")
    good = hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert validate_gguf(tiny_gguf, expected_sha256=good, full_hash=True, hash_cache=cache).sha256 == good
    # Cached verdict is used without hashing: a wrong expectation is caught for free.
    with pytest.raises(ChecksumError):
        validate_gguf(tiny_gguf, expected_sha256="1" * 64, hash_cache=cache)
    # Any change of mtime (or size) forgets the cached hash.
    st = tiny_gguf.stat()
    os.utime(tiny_gguf, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cache.get(tiny_gguf) is None
    assert validate_gguf(tiny_gguf, expected_sha256="1" * 64, hash_cache=cache).sha256 is None


def test_corrupt_hash_cache_is_ignored(tmp_path: Path, tiny_gguf: Path) -> None:
    cache_file = tmp_path / "verified.json"
    cache_file.write_text("{not json")
    assert HashCache(cache_file).get(tiny_gguf) is None
