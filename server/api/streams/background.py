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
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from server.api.errors import APIError
from server.api.streams.background_run import BackgroundRun, KnownRun, OnEnd, StoredRun
from server.api.streams.event_formats import EventFormat, ResponsesFormat
from server.store import RunRecords


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
