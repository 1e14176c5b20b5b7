"""Length-prefixed JSON frames between the server and a worker.

Why JSON and not pickle: the worker runs untrusted code, so everything it sends back is
untrusted too. Unpickling attacker-controlled bytes executes code in the server; decoding
JSON does not. Each frame is a 4-byte big-endian length followed by UTF-8 JSON. This module
is stdlib-only because the worker imports it at start-up, where every millisecond counts.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

HEADER = struct.Struct(">I")
#: Largest frame either side accepts. Output is truncated in the worker long before this.
MAX_FRAME_BYTES = 32 * 1024 * 1024


class ProtocolError(Exception):
    """A frame was malformed, oversized or the pipe closed mid-frame."""


def encode(message: dict[str, Any]) -> bytes:
    """Serialise one message into a complete frame (header + body)."""
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return HEADER.pack(len(body)) + body


def write_frame(fd: int, message: dict[str, Any]) -> None:
    """Write one frame to a raw file descriptor, looping over short writes."""
    view = memoryview(encode(message))
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise ProtocolError("pipe closed mid-frame" if chunks or size != HEADER.size else "pipe closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> dict[str, Any]:
    """Read one frame from a blocking file descriptor and decode it as a JSON object."""
    (length,) = HEADER.unpack(_read_exactly(fd, HEADER.size))
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    try:
        message = json.loads(_read_exactly(fd, length).decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("frame is not valid UTF-8 JSON") from exc
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    return message
