"""The queue every engine shares (``OwnerThread``), with a serial and a batching worker.

No model: the workers here are small and deterministic, so each clause of the contract (FIFO,
refusal when full, cancellation before start, close, a worker's bug) is checked alone. The
real engines run the same class: tests/server/api/test_queue.py over HTTP with the scripted
engine, tests/models/engine/test_engine_batch.py with llama.cpp.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from models.engine.api import (
    EngineClosedError,
    EngineError,
    GenerationRequest,
    GenerationResult,
    QueueFullError,
)
from models.engine.runner import OwnerThread, QueuedGeneration, SerialWorker

WAIT_S = 5.0


def job(prompt: str = "p") -> QueuedGeneration:
    return QueuedGeneration(GenerationRequest(prompt=prompt, max_tokens=4), [1, 2, 3])


def done(job: QueuedGeneration, text: str = "") -> GenerationResult:
    return GenerationResult(text=text, finish_reason="stop", prompt_tokens=3, completion_tokens=len(text))


async def drain(job: QueuedGeneration) -> str:
    return "".join([piece async for piece in job.stream()])


class Gate:
    """A serial worker's ``execute`` that holds each job until released; records the order."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, job: QueuedGeneration) -> None:
        self.started.append(job.request.prompt)
        self.entered.set()
        while not self.release.wait(0.005):
            if job.cancelled:
                job.finish(GenerationResult("", "cancelled", 3, 0))
                return
        job.emit(job.request.prompt.upper())
        job.finish(done(job, job.request.prompt.upper()))


def test_a_full_queue_is_refused_at_once_and_jobs_run_in_order() -> None:
    async def scenario() -> None:
        gate = Gate()
        owner = OwnerThread("t-full", 2, SerialWorker(gate))
        try:
            first = job("a")
            owner.submit(first)
            assert await asyncio.to_thread(gate.entered.wait, WAIT_S)
            waiting = [job("b"), job("c")]
            for queued in waiting:
                owner.submit(queued)
            assert owner.depth() == 3  # one running, two waiting
            started = time.monotonic()
            with pytest.raises(QueueFullError) as refused:
                owner.submit(job("d"))
            assert time.monotonic() - started < 0.5
            assert refused.value.depth == 2 and refused.value.retry_after_s == 1
            gate.release.set()
            assert [await drain(j) for j in (first, *waiting)] == ["A", "B", "C"]
            assert gate.started == ["a", "b", "c"]
            assert owner.depth() == 0
        finally:
            owner.close()

    asyncio.run(scenario())


def test_a_job_cancelled_while_waiting_never_reaches_the_worker() -> None:
    async def scenario() -> None:
        gate = Gate()
        owner = OwnerThread("t-cancel", 4, SerialWorker(gate))
        try:
            running, abandoned, later = job("a"), job("b"), job("c")
            owner.submit(running)
            assert await asyncio.to_thread(gate.entered.wait, WAIT_S)
            owner.submit(abandoned)
            owner.submit(later)
            abandoned.cancel()
            gate.release.set()
            assert await drain(running) == "A"
            assert await drain(abandoned) == ""
            assert abandoned.result.finish_reason == "cancelled" and abandoned.result.completion_tokens == 0
            assert await drain(later) == "C"
            assert gate.started == ["a", "c"]
        finally:
            owner.close()

    asyncio.run(scenario())


def test_close_fails_the_waiting_cancels_the_running_and_refuses_new_jobs() -> None:
    async def scenario() -> None:
        gate = Gate()  # never released: only cancellation ends the running job
        owner = OwnerThread("t-close", 4, SerialWorker(gate))
        running, waiting = job("a"), job("b")
        owner.submit(running)
        assert await asyncio.to_thread(gate.entered.wait, WAIT_S)
        owner.submit(waiting)
        await asyncio.to_thread(owner.close)
        assert not owner.alive()
        assert await drain(running) == ""
        assert running.result.finish_reason == "cancelled"
        with pytest.raises(EngineClosedError):
            await drain(waiting)
        with pytest.raises(EngineClosedError):
            owner.submit(job("c"))
        assert gate.started == ["a"]

    asyncio.run(scenario())


def test_a_worker_that_raises_fails_that_job_and_the_thread_serves_the_next() -> None:
    def execute(job: QueuedGeneration) -> None:
        if job.request.prompt == "bug":
            raise KeyError("oops")
        if job.request.prompt == "ours":
            raise EngineError("llama.cpp said no")
        job.finish(done(job, "fine"))

    async def scenario() -> None:
        owner = OwnerThread("t-bug", 4, SerialWorker(execute))
        try:
            jobs = [job("bug"), job("ours"), job("ok")]
            for queued in jobs:
                owner.submit(queued)
            with pytest.raises(EngineError, match="generation failed: 'oops'"):
                await drain(jobs[0])
            with pytest.raises(EngineError, match="^llama.cpp said no$"):
                await drain(jobs[1])
            await drain(jobs[2])
            assert jobs[2].result.text == "fine"
        finally:
            owner.close()

    asyncio.run(scenario())


class TwoSlots:
    """A batching worker: two jobs advance together, one piece per step; ``broken`` makes the
    next step raise, as a bug in a decode step would."""

    def __init__(self, pieces: int = 3) -> None:
        self.pieces = pieces
        self.slots: list[QueuedGeneration] = []
        self.progress: dict[int, int] = {}
        self.together = 0  # the most jobs advanced by one step
        self.broken = False

    def running(self) -> int:
        return len(self.slots)

    def can_start(self, job: QueuedGeneration) -> bool:
        return len(self.slots) < 2

    def start(self, job: QueuedGeneration) -> None:
        self.slots.append(job)
        self.progress[id(job)] = 0

    def step(self) -> None:
        if self.broken:
            self.broken = False
            raise IndexError("a bug in the step")
        time.sleep(0.002)
        self.together = max(self.together, len(self.slots))
        for job in list(self.slots):
            if job.cancelled:
                self.slots.remove(job)
                job.finish(GenerationResult("", "cancelled", 3, self.progress[id(job)]))
                continue
            self.progress[id(job)] += 1
            job.emit("x")
            if self.progress[id(job)] == self.pieces:
                self.slots.remove(job)
                job.finish(done(job, "x" * self.pieces))

    def cancel_running(self) -> None:
        for job in self.slots:
            job.cancel()

    def fail_running(self, error: EngineError) -> None:
        for job in self.slots:
            job.fail(error)
        self.slots.clear()


def test_a_batching_worker_runs_jobs_together_and_the_third_waits_for_a_slot() -> None:
    async def scenario() -> None:
        worker = TwoSlots(pieces=20)
        owner = OwnerThread("t-batch", 4, worker)
        try:
            jobs = [job(str(n)) for n in range(3)]
            for queued in jobs:
                owner.submit(queued)
            texts = await asyncio.gather(*(drain(j) for j in jobs))
            assert texts == ["x" * 20] * 3
            assert worker.together == 2  # two at once, never three
            assert owner.depth() == 0
        finally:
            owner.close()

    asyncio.run(scenario())


def test_a_step_that_raises_fails_the_running_jobs_and_the_thread_serves_the_next() -> None:
    async def scenario() -> None:
        worker = TwoSlots()
        worker.broken = True
        owner = OwnerThread("t-step-bug", 4, worker)
        try:
            failed = job("a")
            owner.submit(failed)
            with pytest.raises(EngineError, match="generation failed: a bug in the step"):
                await drain(failed)
            served = job("b")
            owner.submit(served)
            assert await drain(served) == "xxx"
        finally:
            owner.close()

    asyncio.run(scenario())


def test_close_lets_a_batching_worker_end_its_cancelled_jobs() -> None:
    async def scenario() -> None:
        worker = TwoSlots(pieces=10**6)
        owner = OwnerThread("t-batch-close", 4, worker)
        running = job("a")
        owner.submit(running)
        stream = running.stream()
        assert await anext(stream) == "x"
        await asyncio.to_thread(owner.close)
        assert not owner.alive()
        async for _ in stream:
            pass
        assert running.result.finish_reason == "cancelled"

    asyncio.run(scenario())


def test_max_queue_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        OwnerThread("t-zero", 0, SerialWorker(lambda job: None))
