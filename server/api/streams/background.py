"""Runs that outlive their connection: an event stream consumed by a task of its own, its
events kept so a client can poll the run, replay what it missed and follow it live.

Why here and not in the routes: a plain request's stream is driven by the client's reads, so
a closed laptop lid or a proxy timeout cancels the run (the right default, kept). A
background run is driven by ``BackgroundRun``'s own task instead; the route only starts it
and answers at once, and any number of later requests read it (``follow``) without driving
it. ``/v1/responses`` with ``background: true`` uses it (OpenAI's background mode).

The events are the route's own server-sent events (``event:`` + ``data:`` lines whose JSON
carries ``sequence_number`` and, on lifecycle events, the whole ``response``), kept as
bytes so a replay is byte-for-byte what a live reader got. Bounded twice: at most
``max_running`` runs at once per API key (beyond: 429 naming the setting), at most ``max_events`` kept per
run in memory (the oldest go first; resuming from before the kept window is a 400 naming it).
With the store's ``RunRecords`` every run is also written to disk as it goes (its snapshot,
each event, how it ended), off the event loop: a server that stops fails the runs still
going (``close``), and a restarted one answers for every run it ever had (``find`` reads
the disk, ``StoredRun`` replays it), the ones the old process left going as failed with
``server_restart``. A run is its owner's: another API key finds nothing (404).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from server.api.errors import APIError, InvalidRequest
from server.store import RunRecord, RunRecords

log = logging.getLogger(__name__)

#: Called once when a run ends, with its last response and how it ended.
OnEnd = Callable[[dict[str, Any], str], None]
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


@dataclass(frozen=True)
class KeptEvent:
    sequence: int
    data: bytes


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


class BackgroundRun:
    """One detached run: its task, its kept events, its latest ``response`` snapshot."""

    def __init__(
        self,
        max_events: int,
        on_end: OnEnd,
        event_format: EventFormat,
        owner: str = "",
        records: RunRecords | None = None,
    ) -> None:
        self.owner = owner  # the API key (digest) that started it; "" without keys
        self._records = records
        self._recorded = False  # begun in the records (once the run has an id)
        self.response: dict[str, Any] = {}
        self._format = event_format
        self.outcome: str | None = None  # set once: completed, incomplete, failed, cancelled
        self._events: deque[KeptEvent] = deque(maxlen=max_events)
        self._max_events = max_events
        self._on_end = on_end
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._shutdown = False  # cancelled because the server stops: that is a failure, not a cancel

    @property
    def id(self) -> str:
        return str(self.response.get("id", ""))

    @property
    def running(self) -> bool:
        return self.outcome is None

    def start(self, chunks: AsyncIterator[bytes]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._consume(chunks), name="background-run")

    async def first_response(self) -> dict[str, Any]:
        """Wait for the first event that carries the response (``response.created``)."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self.response) or not self.running)
        return self.response

    async def _consume(self, chunks: AsyncIterator[bytes]) -> None:
        outcome = "failed"
        error: dict[str, Any] | None = {"code": "server_error", "message": "the run ended without a final event"}
        try:
            async with contextlib.aclosing(chunks):  # type: ignore[type-var]  # our producers are generators
                async for chunk in chunks:
                    for event in split_events(chunk):
                        await self._keep(event)
                        if (ending := self._format.ending(event.payload)) is not None:
                            outcome, error = ending
        except asyncio.CancelledError:
            outcome, error = "cancelled", None
            if self._shutdown:
                outcome = "failed"
                error = {"code": "server_shutdown", "message": "the server stopped before this run finished"}
        except Exception as exc:  # our bug: the run fails visibly, the server goes on
            log.exception("background run %s failed", self.id)
            error = {"code": "server_error", "message": f"{type(exc).__name__}: {exc}"}
        await self._end(outcome, error)

    async def _keep(self, event: SentEvent) -> None:
        async with self._changed:
            kept = KeptEvent(self._format.sequence(event.event_id, event.payload), event.data)
            self._events.append(kept)
            snapshot = self._format.snapshot(event.payload)
            if snapshot is not None:
                self.response = snapshot
            self._record(kept, snapshot is not None)
            self._changed.notify_all()

    def _record(self, kept: KeptEvent, changed: bool) -> None:
        """Hand the event (and a changed snapshot) to the records; the events before the run
        had an id go with its first record."""
        if self._records is None or not self.id:
            return
        if not self._recorded:
            self._records.begin(self.id, self._format.kind, self.owner, self.response)
            self._records.add_events(self.id, [(e.sequence, e.data) for e in self._events])
            self._recorded = True
            return
        self._records.add_events(self.id, [(kept.sequence, kept.data)])
        if changed:
            self._records.update(self.id, self.response)

    async def _end(self, outcome: str, error: dict[str, Any] | None) -> None:
        async with self._changed:
            if self.response.get("status") != outcome or error is not None:
                self.response = {**self.response, "status": outcome, "error": error}
            self.outcome = outcome
            if self._records is not None and self._recorded:
                self._records.end(self.id, outcome, self.response)
            self._changed.notify_all()
        self._on_end(self.response, outcome)

    async def cancel(self, *, shutdown: bool = False) -> None:
        """Stop the run (its generation and sandbox work stop with its producer) and wait."""
        if self._task is None or self._task.done():
            return
        self._shutdown = shutdown
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def follow(self, starting_after: int | None) -> AsyncIterator[bytes]:
        """The kept events after sequence number ``starting_after`` (all, if None), then the
        live ones, until the run ends. Reading does not drive the run: leaving costs it nothing."""
        after = -1 if starting_after is None else starting_after
        self.check_resumable(starting_after)
        while True:
            async with self._changed:
                await self._changed.wait_for(functools.partial(self._news_after, after))
                fresh = [e for e in self._events if e.sequence > after]
                finished = not self.running
            for event in fresh:
                yield event.data
                after = event.sequence
            if finished and self._newest() <= after:
                return

    def check_resumable(self, starting_after: int | None) -> None:
        """A 400 naming ``starting_after`` when events after it were already dropped."""
        if starting_after is None or not self._events:
            return
        oldest = self._events[0].sequence
        if starting_after < oldest - 1:
            raise InvalidRequest(
                f"starting_after {starting_after} is before the oldest kept event ({oldest}): this "
                f"server keeps the last {self._max_events} events of a run (setting background_max_events)",
                param="starting_after",
            )

    def _news_after(self, sequence: int) -> bool:
        return self._newest() > sequence or not self.running

    def _newest(self) -> int:
        return self._events[-1].sequence if self._events else -1


class StoredRun:
    """A run read from the store: one an earlier process had, or one memory let go of. It
    has ended (the start-up marks what was going as failed) and all its events are on disk."""

    running = False

    def __init__(self, record: RunRecord, records: RunRecords) -> None:
        self.id = record.id
        self.owner = record.owner
        self.response = record.response
        self._records = records

    def check_resumable(self, starting_after: int | None) -> None:
        """Every event is kept on disk: any ``starting_after`` resumes."""

    async def follow(self, starting_after: int | None) -> AsyncIterator[bytes]:
        after = -1 if starting_after is None else starting_after
        for _sequence, data in await self._records.events_after(self.id, after):
            yield data

    async def cancel(self, *, shutdown: bool = False) -> None:
        """It has ended: nothing to stop."""


#: A run as the routes read it: going (in memory) or ended (in memory, or from the store).
KnownRun = BackgroundRun | StoredRun


class BackgroundRuns:
    """The app's background runs by response id: at most ``max_running`` going at once; ended
    ones are kept (newest ``max_kept``) so late readers can still replay them; with
    ``records``, every run is on disk too and found there once memory lets it go."""

    def __init__(
        self,
        max_running: int,
        max_events: int,
        *,
        max_kept: int = 1000,
        on_outcome: Callable[[str], None] = lambda _outcome: None,
        on_resumption: Callable[[], None] = lambda: None,
        records: RunRecords | None = None,
    ) -> None:
        #: The store's run records (None: memory only); the app sets them when its store opens.
        self.records = records
        self.max_running = max_running
        self.max_events = max_events
        self.max_kept = max_kept
        self._on_outcome = on_outcome  # metrics: each run's outcome, once
        self.count_resumption = on_resumption  # metrics: a stream resumed with starting_after
        self._runs: OrderedDict[str, BackgroundRun] = OrderedDict()

    def running(self, owner: str | None = None) -> int:
        """Runs going now: all of them, or those ``owner`` (an API key's digest) started."""
        return sum(1 for run in self._runs.values() if run.running and owner in (None, run.owner))

    def check_capacity(self, owner: str = "") -> None:
        """429 naming the limit when ``owner`` has ``max_running`` runs going already."""
        if self.running(owner) >= self.max_running:
            raise APIError(
                429,
                f"{self.max_running} background runs of this API key are running already, the most "
                "this server runs at once per key (setting background_max_running); poll or cancel "
                "one, then retry",
                code="too_many_background_runs",
                param="background",
            )

    async def start(
        self,
        chunks: AsyncIterator[bytes],
        on_end: OnEnd,
        event_format: EventFormat | None = None,
        owner: str = "",
    ) -> BackgroundRun:
        """Start consuming ``chunks`` detached from the caller; return once the run has an id.

        ``event_format``: what the events mean (default: the Responses API's); ``owner``: the
        API key (digest) whose limit it counts against."""
        self.check_capacity(owner)

        def ended(response: dict[str, Any], outcome: str) -> None:
            self._on_outcome(outcome)
            on_end(response, outcome)

        run = BackgroundRun(self.max_events, ended, event_format or ResponsesFormat(), owner, self.records)
        run.start(chunks)
        await run.first_response()
        if not run.id:
            raise RuntimeError("a background run's first event carried no response id")
        self._runs[run.id] = run
        self._forget_old()
        return run

    async def find(self, run_id: str, owner: str) -> KnownRun | None:
        """The run ``owner`` (an API key's digest) started with this id: in memory, else from
        the store; None when there is none, or another key started it (as if absent)."""
        run = self._runs.get(run_id)
        if run is not None:
            return run if run.owner == owner else None
        if self.records is None:
            return None
        record = await self.records.load(run_id, owner)
        return None if record is None else StoredRun(record, self.records)

    def _forget_old(self) -> None:
        ended = [key for key, run in self._runs.items() if not run.running]
        for key in ended[: max(0, len(self._runs) - self.max_kept)]:
            del self._runs[key]

    async def close(self) -> None:
        """Server shutdown: every run still going fails, saying why, rather than stays in progress."""
        await asyncio.gather(*(run.cancel(shutdown=True) for run in list(self._runs.values()) if run.running))
