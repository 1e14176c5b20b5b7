"""Server-sent events framing for OpenAI-style streams: events, the response, the ending.

Two framings, each written once: chat-style streams (``/v1/chat/completions``, ``/v1/agent``)
send bare ``data:`` events and end with ``data: [DONE]`` (``openai_stream``); the Responses
API sends typed, numbered events (``ResponsesEvents``) and ends with its last lifecycle event.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeVar, cast

from fastapi.responses import StreamingResponse

from models.engine.api import EngineError
from server.api.errors import engine_error_to_api

DONE = b"data: [DONE]\n\n"
T = TypeVar("T")


def sse_event(payload: dict[str, Any]) -> bytes:
    """One ``data:`` event; compact JSON keeps chunks small on the hot path."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_response(chunks: AsyncIterator[bytes]) -> StreamingResponse:
    """The streaming response every SSE route returns (no caching, no proxy buffering)."""
    return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)


def sse_error(exc: EngineError) -> bytes:
    """The event that tells a client the engine failed after the stream began: the status
    line (200) is gone by then, so the error travels as an event, in OpenAI's error shape."""
    error = engine_error_to_api(exc)
    return sse_event({"error": {"message": error.message, "type": error.type, "code": error.code}})


async def openai_stream(chunks: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """How every chat-style stream ends: ``chunks``, then the error event if the engine
    failed midway (``sse_error``), then ``data: [DONE]``.

    ``chunks`` is closed as soon as this generator is (the client left), so its own
    cleanup (cancelling the generation) runs at once rather than when it is collected.
    """
    async with contextlib.aclosing(chunks):
        try:
            async for chunk in chunks:
                yield chunk
        except EngineError as exc:
            yield sse_error(exc)
    yield DONE


class ResponsesEvents:
    """One Responses stream's events: ``event: <type>`` + ``data:`` lines whose JSON carries the
    ``type`` and a ``sequence_number`` counted from 0 (what ``starting_after`` resumes from)."""

    def __init__(self) -> None:
        self._numbers = itertools.count()

    def __call__(self, kind: str, fields: dict[str, Any] | None = None, /, **more: Any) -> bytes:
        """One event of type ``kind``: its fields as a dict, as keywords, or both."""
        payload = {"type": kind, "sequence_number": next(self._numbers), **(fields or {}), **more}
        return b"event: " + kind.encode() + b"\n" + sse_event(payload)

    def opening(self, response: dict[str, Any]) -> bytes:
        """``response.created`` and ``response.in_progress``, each with the response as it starts."""
        return self("response.created", {"response": response}) + self("response.in_progress", {"response": response})

    def error(self, exc: EngineError) -> bytes:
        """The engine failed after the stream began: the error as this API's ``error`` event."""
        error = engine_error_to_api(exc)
        return self("error", {"code": error.code, "message": error.message, "param": None})


class _End:
    """Queue marker: the producer finished, with the error it raised (if any)."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error


async def ready_batches(items: AsyncIterator[T]) -> AsyncGenerator[list[T], None]:
    """Re-yield ``items`` in batches: everything that became ready since the last batch.

    Why: a turn's tokens often arrive in a burst (a fast engine, or a whole step right
    after the last token), and every chunk handed to the response is a trip through the
    middleware stack, one socket write and one wake-up of the client. Producing on a task
    and taking whatever has piled up keeps the items and their order, adds no delay to an
    item that is alone (it comes out at once), and turns a burst into one write. Closing or
    cancelling this generator (the client left) cancels the producer, and with it the
    generation and any running execution (iterate it under ``contextlib.aclosing``: leaving
    an ``async for`` early does not close the generator). The producer may run ahead of a
    slow client by at most the events of the run in progress.
    """
    queue: asyncio.Queue[T | _End] = asyncio.Queue()

    async def produce() -> None:
        try:
            async for item in items:
                queue.put_nowait(item)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            queue.put_nowait(_End(exc))
            return
        queue.put_nowait(_End(None))

    producer = asyncio.get_running_loop().create_task(produce())
    try:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            last = batch[-1]
            end = last if isinstance(last, _End) else None
            if end is not None:
                batch.pop()
            if batch:
                yield cast("list[T]", batch)  # only the last item can be an _End, and it is gone
            if end is not None:
                if end.error is not None:
                    raise end.error
                return
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
