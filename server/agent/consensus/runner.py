"""k runs of one task at once, each in its own session, and the answer they agree on.

Any k: a plain request is ``samples: 1``, the same path without a vote (its one run keeps
the request's session, and alone may stop at a client's tool call or an approval), so the
API answers one run and k runs with one renderer and one way to finish (``run_to_end``).

Why at once: each run is its own sequence of generations, and the engine decodes the
sequences in flight together where it batches (``--parallel`` slots on a GPU), so k runs
cost much less wall time than k runs one after another. Where it does not batch (one slot,
the CPU default) the runs queue and take k times as long; they still finish.

Why a session each: a run's code leaves variables and files in its interpreter, and one run
must not read another's; so each run prepares its own session from the same request, as a
request that starts a session does (``service.prepare_run``). The winner's session stays,
and continues the conversation; the others close when the runs end (their steps are in the
response).

The runs differ only in sampling: sample 0 keeps the request's temperature and seed (greedy
at temperature 0, so one sample is exactly a plain run); sample i > 0 is sampled at least
at ``SAMPLE_TEMPERATURE`` with the seed ``base + i`` (``base``: the request's seed, else
one drawn from the request's messages, ``task_seed``), so a sampled request is reproducible.
Why not one fixed base for every request: the same seed gives the same random draws, so
sample i would take the same quantile of every task's first tokens. On the quality suite's
first 21 tasks the dev model's sample 1, seeded 1 for every task, solved 2 and sample 2
solved 7; whether the shared draws were why is not settled (with a seed drawn from the task,
sample 1 of ``pow_mod`` still failed, opening each turn with the sentence of its first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from models.engine.usage import Usage
from server.agent.consensus.vote import Agreement, vote
from server.agent.errors import SessionNotFound
from server.agent.loop import AgentOptions
from server.agent.runtime import AgentRuntime
from server.agent.service import PreparedRun, RunRequest, drive, prepare_run
from server.agent.steps import AgentDone, AgentEvent, Step
from server.tools.approvals.gate import ApprovalPending
from server.tools.client_calls import ToolCallsPending

log = logging.getLogger(__name__)

#: The least temperature of samples 1..k-1: varied enough to take other paths, close to the task.
SAMPLE_TEMPERATURE = 0.7


def task_seed(messages: Sequence[dict[str, Any]]) -> int:
    """The seed base of a request that sets none: a stable hash of its messages (the same
    request samples the same runs; another task draws other numbers)."""
    return zlib.crc32(json.dumps(list(messages), sort_keys=True, default=str).encode())


def sample_options(options: AgentOptions, index: int, base_seed: int = 0) -> AgentOptions:
    """Sample ``index``'s options: the request's for sample 0; sampled and seeded for the rest
    (from the request's seed, else ``base_seed``), which wait in a full engine queue rather
    than fail (the request was admitted already)."""
    if index == 0:
        return options
    base = base_seed if options.seed is None else options.seed
    return replace(
        options,
        temperature=max(options.temperature, SAMPLE_TEMPERATURE),
        seed=base + index,
        waits_in_queue=True,
    )


@dataclass
class SampleEvent:
    """One event of sample ``sample``'s run (``service.drive``'s events); a single run's
    events are sample 0's."""

    sample: int
    event: AgentEvent | ToolCallsPending | ApprovalPending


@dataclass
class RunsDone:
    """Every run's end and, with more than one, the vote: the last event of ``drive_runs``."""

    runs: list[PreparedRun]
    dones: list[AgentDone]
    agreement: Agreement | None  # None: one run, nothing to vote on

    @property
    def winner(self) -> int:
        return 0 if self.agreement is None else self.agreement.sample

    @property
    def done(self) -> AgentDone:
        """The winning run's end, its usage the sum of every run's (what the request cost)."""
        if self.agreement is None:
            return self.dones[0]
        return replace(
            self.dones[self.winner],
            usage=sum((d.usage for d in self.dones), Usage()),
        )

    def steps_of(self, index: int) -> list[Step]:
        return self.runs[index].steps_of(self.dones[index])

    def outcome(self) -> dict[str, Any]:
        """The winning run's ``outcome``; after a vote with the summed usage, every run's, and
        the agreement."""
        outcome = self.runs[self.winner].outcome(self.done)
        if self.agreement is None:
            return outcome
        return {
            **outcome,
            "samples": [self.sample(i) for i in range(len(self.runs))],
            "agreement": self.agreement.to_json(),
        }

    def sample(self, index: int) -> dict[str, Any]:
        """One run as plain JSON: its index, its answer (None: it did not answer) and its ``outcome``."""
        return sample_outcome(self.runs[index], index, self.dones[index])


#: How a run that answers at once can end: every run done, or a single run suspended on a
#: client's tool call or (``pause_on_approval``) an approval.
RunsEnd = RunsDone | ToolCallsPending | ApprovalPending


def answer_of(done: AgentDone) -> str | None:
    """What a run votes for: its ``<solution>``, else nothing (``vote``'s module doc says why)."""
    return done.message if done.finish_reason == "solution" and done.message.strip() else None


def sample_outcome(run: PreparedRun, index: int, done: AgentDone) -> dict[str, Any]:
    return {"index": index, "answer": answer_of(done), **run.outcome(done)}


async def prepare_runs(runtime: AgentRuntime, request: RunRequest, samples: int) -> list[PreparedRun]:
    """The runs that answer one request: ``samples`` 1 is the request's own run
    (``service.prepare_run``, any session); more are sessions prepared from one request that
    starts a session, all or none.

    Raises what ``prepare_run`` raises (the first failure); sessions already made are closed.
    """
    if samples == 1:
        return [await prepare_run(runtime, request)]
    assert request.session_id is None, "only a request that starts a session samples"
    base = task_seed(request.messages)
    prepared = await asyncio.gather(
        *(
            prepare_run(
                runtime,
                replace(
                    request,
                    options=sample_options(request.options, i, base),
                    run_id=f"{request.run_id}_{i}" if request.run_id else None,  # one record a run
                ),
            )
            for i in range(samples)
        ),
        return_exceptions=True,
    )
    runs = [run for run in prepared if isinstance(run, PreparedRun)]
    failure = next((p for p in prepared if isinstance(p, BaseException)), None)
    if failure is not None:
        for run in runs:
            run.session.lock.release()
            runtime.sessions.delete(run.session.id)
        raise failure
    return runs


async def drive_runs(runtime: AgentRuntime, runs: list[PreparedRun]) -> AsyncIterator[SampleEvent | RunsDone]:
    """Drive every run at once; each event as a ``SampleEvent``, then ``RunsDone`` once every
    run is done (with several, after the vote).

    One run is driven as it is: its session stays, and it may end suspended instead (its
    last event a ``ToolCallsPending`` or an ``ApprovalPending``; no ``RunsDone`` follows).
    Of several, a run that fails (our error, or a first generation refused) stops the others
    and the request fails with its error; however they end, only one session stays: the
    winner's, or sample 0's when there was no vote (as a single run's session stays).
    """
    if len(runs) == 1:
        async for item in _drive_one(runtime, runs[0]):
            yield item
        return
    dones: dict[int, AgentDone] = {}
    closed = False
    try:
        async for index, event in _together([drive(runtime, run) for run in runs]):
            if isinstance(event, AgentDone):
                dones[index] = event
            assert not isinstance(event, ToolCallsPending), "a sampled run cannot wait for a client's tool call"
            yield SampleEvent(index, event)
        ends = [dones[i] for i in range(len(runs))]
        result = RunsDone(runs, ends, vote([answer_of(done) for done in ends]))
        # Off the event loop: stopping a worker takes ~10-15 ms (SessionStore.delete_off_loop).
        await asyncio.gather(*(_close_off_loop(runtime, run) for i, run in enumerate(runs) if i != result.winner))
        closed = True
        yield result
    finally:
        if not closed:  # a failure or a cancel: at once, on the loop (nothing may await here)
            for run in runs[1:]:
                _close(runtime, run)


async def _drive_one(runtime: AgentRuntime, run: PreparedRun) -> AsyncIterator[SampleEvent | RunsDone]:
    events = drive(runtime, run)
    async with contextlib.aclosing(events):  # type: ignore[type-var]  # drive is an async generator
        async for event in events:
            yield SampleEvent(0, event)
            if isinstance(event, AgentDone):
                yield RunsDone([run], [event], None)


async def run_to_end(
    runtime: AgentRuntime, runs: list[PreparedRun], see: Callable[[AgentEvent | ApprovalPending], object] | None = None
) -> RunsEnd:
    """Drive the runs to their end without streaming (``see``: shown each run's events as
    they come); how they ended. The one way a run that answers at once is finished."""
    last: SampleEvent | RunsDone | None = None
    async for item in drive_runs(runtime, runs):
        if see is not None and isinstance(item, SampleEvent) and not isinstance(item.event, ToolCallsPending):
            see(item.event)
        last = item
    if isinstance(last, RunsDone):
        return last
    assert last is not None and isinstance(last.event, ToolCallsPending | ApprovalPending), (
        "the agent loop ended without a final event"
    )
    return last.event


def _close(runtime: AgentRuntime, run: PreparedRun) -> None:
    """Close a losing run's session (its steps are in the response); it may be gone already."""
    with contextlib.suppress(SessionNotFound):
        runtime.sessions.delete(run.session.id)


async def _close_off_loop(runtime: AgentRuntime, run: PreparedRun) -> None:
    with contextlib.suppress(SessionNotFound):
        await runtime.sessions.delete_off_loop(run.session.id)


class _End:
    """A stream's end; ``error``: the exception it raised."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


async def _together(streams: Sequence[AsyncIterator[Any]]) -> AsyncIterator[tuple[int, Any]]:
    """The events of every stream as they come, with the stream's index.

    Each stream is consumed by a task of its own, so one waiting (on the engine, on an
    execution) does not hold up the others. The first error stops the rest; so does
    leaving early (the tasks are cancelled and awaited, so each stream's own clean-up, a
    session's lock released, has run when this ends).
    """
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[Any]) -> None:
        try:
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for event in stream:
                    queue.put_nowait((index, event))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            queue.put_nowait((index, _End(exc)))
        else:
            queue.put_nowait((index, _End()))

    tasks = [asyncio.create_task(pump(i, stream)) for i, stream in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, item = await queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                running -= 1
                continue
            yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
