"""GGUF file checks and cheap metadata reads, without loading the model.

Why our own header reader instead of ``gguf.GGUFReader``: the reader memory-maps the
whole file and builds numpy views for every field (the 32k-50k token strings included),
which is slow for a start-up check and gives poor errors on a truncated file. Reading the
header sequentially costs milliseconds, tells us exactly where a file ends too early, and
lets us compute where the tensor data must end, which catches a truncated download
without hashing 4 GB. The ``gguf`` package still supplies the format constants.

A full sha256 is only computed when asked (``full_hash=True``: on pull or an explicit
verify). Its result is remembered in a small JSON file keyed by (path, size, mtime), so a
later start can reuse the verdict for free.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from gguf.constants import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType, GGUFValueType

from models.errors import ChecksumError, ModelFileError

__all__ = [
    "GGUFInfo",
    "HashCache",
    "file_sha256",
    "read_gguf_header",
    "read_gguf_metadata",
    "validate_gguf",
]

GGUF_MAGIC = b"GGUF"
DEFAULT_FIX = "re-download or re-export the file, or pick another with --model"

_SCALARS: dict[int, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class GGUFInfo:
    """What a header read learned about a GGUF file.

    ``data_end`` is the byte offset where the last tensor's data ends, or ``None`` when a
    tensor type unknown to the installed ``gguf`` package prevents computing it.
    ``array_lengths`` holds the length of each array left out of ``metadata`` for size.
    """

    path: Path
    file_size: int
    version: int
    tensor_count: int
    metadata: dict[str, Any]
    data_offset: int
    data_end: int | None
    array_lengths: dict[str, int] = field(default_factory=dict)
    sha256: str | None = None  # set when the hash was computed or taken from the cache


class _HeaderTruncated(Exception):
    """Internal: the header claims more bytes than the file has."""


class _Reader:
    """Sequential little-endian reader that never reads or seeks past the file's end."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._size = size
        self.pos = 0

    def _need(self, n: int) -> None:
        if n < 0 or self.pos + n > self._size:
            raise _HeaderTruncated

    def read(self, n: int) -> bytes:
        self._need(n)
        data = self._f.read(n)
        if len(data) != n:
            raise _HeaderTruncated
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        self._need(n)
        self._f.seek(n, os.SEEK_CUR)
        self.pos += n

    def u32(self) -> int:
        return _U32.unpack(self.read(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self.read(8))[0]

    def string(self) -> str:
        return self.read(self.u64()).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.skip(self.u64())

    def scalar(self, vtype: int) -> Any:
        if vtype == GGUFValueType.STRING:
            return self.string()
        fmt = _SCALARS.get(vtype)
        if fmt is None:
            raise ValueError(f"unknown GGUF value type {vtype}")
        return fmt.unpack(self.read(fmt.size))[0]

    def skip_value(self, vtype: int) -> None:
        if vtype == GGUFValueType.STRING:
            self.skip_string()
        elif vtype == GGUFValueType.ARRAY:
            etype, count = self.u32(), self.u64()
            self.skip_array(etype, count)
        else:
            fmt = _SCALARS.get(vtype)
            if fmt is None:
                raise ValueError(f"unknown GGUF value type {vtype}")
            self.skip(fmt.size)

    def skip_array(self, etype: int, count: int) -> None:
        fmt = _SCALARS.get(etype)
        if fmt is not None:
            self.skip(fmt.size * count)
            return
        if etype == GGUFValueType.STRING:
            self._skip_strings(count)
            return
        for _ in range(count):
            self.skip_value(etype)

    def _skip_strings(self, count: int) -> None:
        """Skip ``count`` length-prefixed strings by walking 1 MiB chunks in memory.

        A token list has 32k-50k entries; a read and a seek per entry would dominate
        the whole header parse.
        """
        buf, at = b"", 0
        for _ in range(count):
            if at + 8 > len(buf):
                buf, at = buf[at:] + self._f.read(1 << 20), 0
                if at + 8 > len(buf):
                    raise _HeaderTruncated
            end = at + 8 + _U64.unpack_from(buf, at)[0]
            if self.pos + (end - at) > self._size:
                raise _HeaderTruncated
            while end > len(buf):  # a string longer than what is buffered
                more = self._f.read(max(1 << 20, end - len(buf)))
                if not more:
                    raise _HeaderTruncated
                buf += more
            self.pos += end - at
            at = end
        # Give back what was read ahead so the file position matches self.pos.
        self._f.seek(self.pos)


def _fix_hint(fix: str | None) -> str:
    return fix or DEFAULT_FIX


def read_gguf_header(path: str | os.PathLike[str], *, max_array_len: int = 64, fix: str | None = None) -> GGUFInfo:
    """Parse the header, metadata and tensor table of a GGUF file; no tensor data is read.

    Arrays longer than ``max_array_len`` (token lists, merges) are skipped and only their
    length recorded, which keeps this fast. Raises ModelFileError (one line, with ``fix``)
    for a missing, non-GGUF or truncated file.
    """
    p = Path(path)
    hint = _fix_hint(fix)
    try:
        size = p.stat().st_size
        f = p.open("rb")
    except FileNotFoundError as exc:
        raise ModelFileError(f"model file {p} does not exist; {hint}") from exc
    except IsADirectoryError as exc:
        raise ModelFileError(f"model path {p} is a directory, not a .gguf file; {hint}") from exc
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {p} ({exc.strerror}); {hint}") from exc
    with f:
        head = f.read(4)
        if head != GGUF_MAGIC:
            if len(head) < 4:
                raise ModelFileError(f"model file {p} is truncated ({size} bytes, too short for GGUF); {hint}")
            raise ModelFileError(f"model file {p} is not a GGUF file (it starts with {head!r}, not b'GGUF'); {hint}")
        f.seek(0)
        reader = _Reader(f, size)
        try:
            return _parse(reader, p, size, max_array_len)
        except _HeaderTruncated as exc:
            raise ModelFileError(
                f"model file {p} is truncated (its header runs past the end of the file at {size} bytes); {hint}"
            ) from exc
        except ValueError as exc:
            raise ModelFileError(f"model file {p} has a corrupt GGUF header ({exc}); {hint}") from exc


def _parse(r: _Reader, path: Path, size: int, max_array_len: int) -> GGUFInfo:
    r.skip(4)  # magic, checked by the caller
    version = r.u32()
    if version not in (2, 3):
        # Version 1 used 32-bit counts; a huge number usually means a big-endian file.
        raise ValueError(f"unsupported GGUF version {version}")
    tensor_count, kv_count = r.u64(), r.u64()
    metadata: dict[str, Any] = {}
    array_lengths: dict[str, int] = {}
    for _ in range(kv_count):
        key = r.string()
        vtype = r.u32()
        if vtype == GGUFValueType.ARRAY:
            etype, count = r.u32(), r.u64()
            if count <= max_array_len:
                metadata[key] = [r.scalar(etype) for _ in range(count)]
            else:
                array_lengths[key] = count
                r.skip_array(etype, count)
        else:
            metadata[key] = r.scalar(vtype)

    data_end_rel: int | None = 0
    for _ in range(tensor_count):
        r.skip_string()  # tensor name
        n_dims = r.u32()
        if n_dims > 8:
            raise ValueError(f"tensor with {n_dims} dimensions")
        n_elems = 1
        for _ in range(n_dims):
            n_elems *= r.u64()
        ttype, offset = r.u32(), r.u64()
        nbytes = _tensor_nbytes(ttype, n_elems)
        data_end_rel = None if nbytes is None or data_end_rel is None else max(data_end_rel, offset + nbytes)

    alignment = int(metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)) or GGUF_DEFAULT_ALIGNMENT
    data_offset = -(-r.pos // alignment) * alignment
    return GGUFInfo(
        path=path,
        file_size=size,
        version=version,
        tensor_count=tensor_count,
        metadata=metadata,
        data_offset=data_offset,
        data_end=None if data_end_rel is None else data_offset + data_end_rel,
        array_lengths=array_lengths,
    )


def _tensor_nbytes(ttype: int, n_elems: int) -> int | None:
    """Bytes a tensor's data occupies, or None for a type this gguf package does not know."""
    try:
        block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
    except (ValueError, KeyError):
        return None
    return n_elems // block_size * type_size


def read_gguf_metadata(path: str | os.PathLike[str], *, max_array_len: int = 64) -> dict[str, Any]:
    """Return the GGUF metadata key/values (e.g. ``tokenizer.chat_template``, ``general.name``,
    ``llama.context_length``, ``llama.block_count``) without reading tensor data.

    Long arrays such as the token list are omitted; see ``read_gguf_header`` for their lengths.
    """
    return read_gguf_header(path, max_array_len=max_array_len).metadata


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file, streamed (about 1-2 s per GB)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class HashCache:
    """Remembers verified sha256 values keyed by (real path, size, mtime_ns).

    A change to any of the three invalidates the entry, so a replaced or modified file is
    hashed again. Writes are atomic (temp file + rename); a corrupt cache file is ignored.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _key(path: Path) -> tuple[str, int, int]:
        st = path.stat()
        return str(path.resolve()), st.st_size, st.st_mtime_ns

    def get(self, path: str | os.PathLike[str]) -> str | None:
        """The remembered sha256 for this exact file state, or None."""
        real, size, mtime = self._key(Path(path))
        rec = self._load().get(real)
        if isinstance(rec, dict) and rec.get("size") == size and rec.get("mtime_ns") == mtime:
            sha = rec.get("sha256")
            return sha if isinstance(sha, str) else None
        return None

    def put(self, path: str | os.PathLike[str], sha256: str) -> None:
        """Record a sha256 computed for the file's current state (best effort)."""
        real, size, mtime = self._key(Path(path))
        data = self._load()
        data[real] = {"size": size, "mtime_ns": mtime, "sha256": sha256}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
            tmp.replace(self.path)
        except OSError:
            pass  # a read-only store still works; it just hashes again next time

    def forget(self, path: str | os.PathLike[str]) -> None:
        """Drop any record for this path (used after deleting a bad file)."""
        data = self._load()
        if data.pop(str(Path(path).resolve()), None) is not None:
            with contextlib.suppress(OSError):
                self.path.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


def validate_gguf(
    path: str | os.PathLike[str],
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    full_hash: bool = False,
    *,
    hash_cache: HashCache | None = None,
    fix: str | None = None,
) -> GGUFInfo:
    """Check that ``path`` is a complete GGUF file, cheaply unless a full hash is asked for.

    Always: exists, starts with b"GGUF", header parses, tensor data fits in the file, size
    equals ``expected_size`` when given. The sha256 is compared with ``expected_sha256``
    when ``full_hash`` is set (the result is then cached) or when ``hash_cache`` already
    holds a hash for this exact file state. Raises ModelFileError / ChecksumError whose
    message is one line ending with ``fix``.
    """
    p = Path(path)
    hint = _fix_hint(fix)
    info = read_gguf_header(p, max_array_len=0, fix=fix)
    if expected_size is not None and info.file_size != expected_size:
        if info.file_size < expected_size:
            raise ModelFileError(f"model file {p} is truncated ({info.file_size} of {expected_size} bytes); {hint}")
        raise ModelFileError(f"model file {p} has {info.file_size} bytes, expected {expected_size}; {hint}")
    if info.data_end is not None and info.file_size < info.data_end:
        raise ModelFileError(
            f"model file {p} is truncated ({info.file_size} of {info.data_end} bytes of tensor data); {hint}"
        )

    sha: str | None = None
    if full_hash:
        sha = file_sha256(p)
        if hash_cache is not None:
            hash_cache.put(p, sha)
    elif hash_cache is not None:
        sha = hash_cache.get(p)
    if expected_sha256 is not None and sha is not None and sha != expected_sha256.lower():
        raise ChecksumError(
            f"model file {p} fails its checksum (sha256 {sha[:12]}..., expected {expected_sha256[:12]}...); {hint}"
        )
    return replace(info, sha256=sha)
