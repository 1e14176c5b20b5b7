"""Cancel work whose client has gone away.

Streaming responses learn of a disconnect from Starlette (the generator is cancelled);
a non-streaming request has no such signal, so we watch for it while the work runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import Request

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The HTTP client went away before the answer was ready."""


async def unless_disconnected(request: Request, work: Awaitable[T], poll_s: float = 0.2) -> T:
    """Await ``work``; cancel it (and raise ClientDisconnected) if the client leaves."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ClientDisconnected
    finally:
        if not task.done():
            task.cancel()


async def collect_unless_disconnected(request: Request, handle: Any) -> str | None:
    """All of a generation's text, or None if the client left first (generation cancelled)."""

    async def collect() -> str:
        return "".join([piece async for piece in handle.stream()])

    try:
        return await unless_disconnected(request, collect())
    except ClientDisconnected:
        return None
