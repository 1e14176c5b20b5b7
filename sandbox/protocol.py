"""Length-prefixed JSON frames between the server and a worker.

Why JSON and not pickle: the worker runs untrusted code, so everything it sends back is
untrusted too. Unpickling attacker-controlled bytes executes code in the server; decoding
JSON does not. Each frame is a 4-byte big-endian length followed by UTF-8 JSON. This module
is stdlib-only because the worker imports it at start-up, where every millisecond counts.
"""

from __future__ import annotations

import json
import os
import re
import struct
from typing import Any

HEADER = struct.Struct(">I")
#: Largest frame either side accepts. Output is truncated in the worker long before this,
#: and the server bounds a worker's frames far tighter by what it expects (see sandbox/bridge/).
MAX_FRAME_BYTES = 32 * 1024 * 1024
#: Deepest nesting of lists and objects a frame may hold: deeper data is no tool's and would
#: make the parser, or any later encoder, recurse past the interpreter's limit.
MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


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


def head_and_tail(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters, its head and tail kept (the same object when it
    fits): a frame is bounded, and what the code writes into one (an exception's message, its
    output) is not. Used by the worker before it sends, and by the server on what it receives."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - 2 * half} characters omitted] ...\n{text[-half:]}"


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
    return decode(_read_exactly(fd, length))


def decode(body: bytes) -> dict[str, Any]:
    """A frame's body as a JSON object whose every string is encodable; total: ProtocolError
    for anything else, whatever the parser raised (a deep nest raises RecursionError, not
    ValueError), so a hostile frame can never escape as another exception.

    Lone surrogates (``"\\ud800"`` in the JSON, or raw from a ``surrogatepass`` encoder) are
    replaced by U+FFFD: a string that cannot be encoded as UTF-8 must not reach a response.
    """
    try:
        message = json.loads(body.decode("utf-8", "surrogatepass"))
    except Exception as exc:  # noqa: BLE001 - every parser failure is the same protocol error
        raise ProtocolError(f"frame is not valid UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    return encodable(message)  # type: ignore[no-any-return]


def encodable(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """`value` (JSON data) with lone surrogates replaced in every string and key; ProtocolError
    if it nests deeper than `max_depth`. Iterative, so depth costs no recursion."""
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, int]] = [(root, 0, 0)]
    while stack:
        parent, key, depth = stack.pop()
        item = parent[key]
        if isinstance(item, str):
            parent[key] = _clean(item)
        elif isinstance(item, (list, dict)):
            if depth >= max_depth:
                raise ProtocolError(f"frame nests deeper than {max_depth} levels")
            if isinstance(item, dict) and any(_clean(k) is not k for k in item):
                item = parent[key] = {_clean(k): v for k, v in item.items()}
            keys = item.keys() if isinstance(item, dict) else range(len(item))
            stack.extend((item, k, depth + 1) for k in keys)
    return root[0]


def _clean(text: str) -> str:
    """`text` unchanged when it encodes as UTF-8 (the common case, and then the same object)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text
