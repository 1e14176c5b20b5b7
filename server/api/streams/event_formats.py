"""What the events of a background run mean, and our own SSE output read back as events.

A background run (``server.api.streams.background``) keeps the route's own server-sent events
as bytes, so a replay is byte-for-byte what a live reader got; to answer a poll it must still
know which event orders them, which carries the state a poll answers, and which ends the run.
That is the one thing that differs between the Responses API's events and ``/v1/agent``'s
chunks, so it is a small format object each (``EventFormat``), not two kinds of run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

#: How a run ended: the outcome (completed, incomplete, failed, cancelled) and its error, if any.
Ending = tuple[str, dict[str, Any] | None]


class EventFormat(Protocol):
    """What a run's events mean: their order, the state a poll answers, how the run ended."""

    kind: str  # its name in the store's records

    def sequence(self, event_id: int | None, payload: dict[str, Any]) -> int: ...

    def snapshot(self, payload: dict[str, Any]) -> dict[str, Any] | None: ...

    def ending(self, payload: dict[str, Any]) -> Ending | None: ...


class ResponsesFormat:
    """The Responses API's events: ``sequence_number`` orders them; lifecycle events carry the
    whole ``response``; ``response.completed``/``.incomplete``/``.failed`` end the run."""

    kind = "responses"

    def sequence(self, event_id: int | None, payload: dict[str, Any]) -> int:
        return int(payload["sequence_number"])

    def snapshot(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        response = payload.get("response")
        return response if isinstance(response, dict) else None

    def ending(self, payload: dict[str, Any]) -> Ending | None:
        kind = payload.get("type")
        if kind == "error":
            return "failed", {"code": payload.get("code") or "server_error", "message": payload.get("message")}
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            return str(payload["response"]["status"]), None
        return None


class AgentFormat:
    """``/v1/agent``'s chat-completion chunks, numbered by ``numbered`` (their ``id:``); the
    ``agent`` field's ``session`` and ``done`` events say what a poll answers. With samples,
    the run is known by sample 0's session (the first); the ``done`` event names the winner's."""

    kind = "agent"

    def sequence(self, event_id: int | None, payload: dict[str, Any]) -> int:
        if event_id is None:
            raise ValueError("an agent event without an id: number the stream with numbered()")
        return event_id

    def snapshot(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        agent = payload.get("agent") or {}
        if agent.get("type") == "session" and not agent.get("sample"):
            return {"id": agent["session_id"], "object": "agent.run", "status": "in_progress", "error": None}
        if agent.get("type") == "done":
            fields = {k: v for k, v in agent.items() if k != "type"}
            return {"id": agent["session_id"], "object": "agent.run", "status": "completed", **fields}
        return None

    def ending(self, payload: dict[str, Any]) -> Ending | None:
        if "error" in payload:
            return "failed", payload["error"]
        if (payload.get("agent") or {}).get("type") == "done":
            return "completed", None
        return None


async def numbered(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` (``data:`` events, maybe several per chunk) with an ``id:`` line on each
    event, 0, 1, 2, ...: what ``Last-Event-ID`` resumes from. ``data: [DONE]`` is left out (a
    reader's stream ends when the run does)."""
    counter = 0
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]  # our producers are generators
        async for chunk in chunks:
            out = []
            for block in chunk.split(b"\n\n"):
                if block.strip() and block.strip() != b"data: [DONE]":
                    out.append(b"id: %d\n" % counter + block + b"\n\n")
                    counter += 1
            if out:
                yield b"".join(out)


@dataclass(frozen=True)
class SentEvent:
    """One event of our own SSE output: its bytes, its ``id:`` (if any), its ``data`` JSON."""

    data: bytes
    event_id: int | None
    payload: dict[str, Any]


def split_events(chunk: bytes) -> list[SentEvent]:
    """The events in one chunk of our own SSE output.

    A chunk may hold several events (``id:``/``event:``/``data:`` blocks ending in a blank
    line); our JSON is compact, so it never holds a raw newline.
    """
    events = []
    for block in chunk.split(b"\n\n"):
        if not block.strip():
            continue
        lines = block.split(b"\n")
        data = next((line[6:] for line in lines if line.startswith(b"data: ")), None)
        if data is None:
            raise ValueError(f"an event without data: {block[:80]!r}")
        event_id = next((int(line[4:]) for line in lines if line.startswith(b"id: ")), None)
        events.append(SentEvent(block + b"\n\n", event_id, json.loads(data)))
    return events
