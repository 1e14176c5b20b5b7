"""A run that can outlive its request: suspended while the client runs its own tools.

Why: when agent code calls one of the client's function tools (``server.tools.client_calls``)
the execution blocks inside the sandbox until the client sends the result in a *later*
request. The loop generator (``run_agent``) is then waiting for that execution, and must stay
so: the request that carried the call ends with ``tool_calls``, the next one picks the same
generator up where it stopped. `SuspendableRun` holds the generator and the one step of it in
flight; `events` yields its events and, when the bridge announces a client call, yields a
``ToolCallsPending`` and returns without touching the step in flight. The next request's
`events` continues it. A tool call waiting for a person's approval (``server.tools.approvals``) is
announced the same way and yielded as it comes (an ``ApprovalPending``): a stream shows it and
goes on (the decision arrives by another request), while a consumer that set
`pause_on_approval` (a request that must answer now) gets it as the last event, the run
suspended as for a client's call. Cancelling a request that is consuming events cancels the step (so a
disconnected client still stops the generation or kills the execution, as before).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from server.agent.steps import AgentEvent


class SuspendableRun:
    """One agent run over a session, possibly spread over several requests."""

    def __init__(self, events: AsyncIterator[AgentEvent], announced: asyncio.Queue[Any] | None) -> None:
        self._source = events
        self._announced = announced
        self._next: asyncio.Future[AgentEvent] | None = None
        self.finished = False
        #: End `events` after an approval request (the run stays suspended), or go on.
        self.pause_on_approval = False
        self._loop = asyncio.get_running_loop()

    @property
    def suspended(self) -> bool:
        return not self.finished and self._next is not None

    async def events(self) -> AsyncIterator[Any]:
        """The run's events until it ends, or until a client tool call suspends it
        (then a ``ToolCallsPending`` from ``server.tools.client_calls`` is the last event)."""
        from server.tools.client_calls import PendingCall, ToolCallsPending

        try:
            while not self.finished:
                if self._next is None:
                    self._next = asyncio.ensure_future(anext(self._source))
                waiters: set[asyncio.Future[Any]] = {self._next}
                announce = None
                if self._announced is not None:
                    announce = asyncio.ensure_future(self._announced.get())
                    waiters.add(announce)
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if announce is not None and not announce.done():
                        announce.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await announce
                if announce is not None and announce.done() and not announce.cancelled():
                    announced = announce.result()
                    if isinstance(announced, PendingCall):
                        yield ToolCallsPending([announced])
                        return
                    yield announced  # an approval request
                    if self.pause_on_approval:
                        return
                    continue
                step, self._next = self._next, None
                try:
                    event = step.result()
                except StopAsyncIteration:
                    self.finished = True
                    return
                yield event
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the run (from any thread): cancel the step in flight, close the generator."""
        self.finished = True

        def stop() -> None:
            if self._next is not None and not self._next.done():
                self._next.cancel()
            self._next = None

        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            stop()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(stop)
