"""Server-sent events framing for OpenAI-style streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

DONE = b"data: [DONE]\n\n"


def sse_event(payload: dict[str, Any]) -> bytes:
    """One ``data:`` event; compact JSON keeps chunks small on the hot path."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_response(chunks: AsyncIterator[bytes]) -> StreamingResponse:
    """The streaming response every SSE route returns (no caching, no proxy buffering)."""
    return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
