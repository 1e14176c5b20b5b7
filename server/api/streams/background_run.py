"""One run that outlives its connection: its own task consumes the event stream, keeps the
events (and, with the store's records, writes them to disk as they come) and answers polls
and readers (``follow``) without being driven by them. ``StoredRun`` is one an earlier
process had, read back from the store. Why runs are detached at all:
``server.api.streams.background``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from server.api.errors import InvalidRequest
from server.api.streams.event_formats import EventFormat, SentEvent, split_events
from server.store import RunRecord, RunRecords

log = logging.getLogger(__name__)

#: Called once when a run ends, with its last response and how it ended.
OnEnd = Callable[[dict[str, Any], str], None]


@dataclass(frozen=True)
class KeptEvent:
    sequence: int
    data: bytes


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
