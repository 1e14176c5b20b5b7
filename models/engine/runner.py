"""One owner thread per loaded model, a bounded FIFO queue in front of it.

llama.cpp contexts are not thread-safe, so exactly one thread ever touches a model: its
``OwnerThread``. The event loop submits jobs; a full queue is refused at submit time (the
HTTP layer turns ``QueueFullError`` into 503 + Retry-After) and a running request is never
interrupted to serve a new one. What the owner thread does with a job is its ``Worker``'s
business:

- ``SerialWorker`` runs one job at a time, start to end (the scripted fake, the remote engine);
- ``models.engine.llama.batch.BatchScheduler`` keeps several jobs decoding in one llama.cpp
  batch and starts the next waiting one only when a slot and KV room are free.

So every engine runs the same queue code, and deterministic tests on the scripted fake
exercise what production runs: the FIFO bound, refusal when full, dropping a job cancelled
while it waits, failing what waits and cancelling what runs on close, and failing a job
(never the thread) when a worker raises. Text goes back to the event loop through
``QueuedGeneration``, one wake-up per burst of tokens, at most one per wake interval, sent by
``models.engine.wakeup`` (a wake-up that keeps the GIL, so the event loop's share of a token
runs beside the next decode instead of in front of it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from models.engine.api import (
    EngineClosedError,
    EngineError,
    GenerationRequest,
    GenerationResult,
    QueueFullError,
    TokenLogprob,
)
from models.engine.wakeup import loop_waker

log = logging.getLogger(__name__)

_TEXT, _DONE, _ERROR = "text", "done", "error"


class QueuedGeneration:
    """A request in flight; the ``GenerationHandle`` the engine returns.

    The owner thread calls ``emit``/``finish``/``fail``; the event loop consumes
    ``stream()``. Leaving ``stream()`` early (client gone, task cancelled) cancels the job,
    and the owner thread stops at its next token.
    """

    def __init__(self, request: GenerationRequest, prompt_tokens: list[int], *, wake_interval_s: float = 0.0) -> None:
        self.request = request
        self.prompt_tokens = prompt_tokens
        self.submitted_at = time.perf_counter()
        self._loop = asyncio.get_running_loop()
        self._waker = loop_waker(self._loop)
        self._events: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._backlog: deque[tuple[str, object]] = deque()
        self._backlog_lock = threading.Lock()
        self._wake_pending = False
        self._wake_interval_s = wake_interval_s
        self._last_wake = -math.inf  # never woken: the first text goes at once, however young the clock
        self._held = False  # text in the backlog that waits for the wake interval
        self._cancel = threading.Event()
        self._result: GenerationResult | None = None
        # Each sampled token's logprob, appended by the owner thread as it is sampled (where
        # the request asked for logprobs and the engine computes them), before its text is
        # emitted: a stream reader may read any prefix at any time (list.append is atomic).
        self.token_logprobs: list[TokenLogprob] = []

    # -- called from the owner thread -------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def emit(self, text: str) -> None:
        if text:
            self._post(_TEXT, text, urgent=False)

    def finish(self, result: GenerationResult) -> None:
        self._post(_DONE, result)

    def fail(self, error: BaseException) -> None:
        self._post(_ERROR, error)

    def flush(self) -> None:
        """Hand over text held back by the wake interval now (the owner thread calls this
        before a long step, such as a prompt chunk, so no text waits for that step)."""
        with self._backlog_lock:
            if not self._held or self._wake_pending:
                return
            self._arm_wake()
        self._wake()

    def _post(self, kind: str, payload: object, *, urgent: bool = True) -> None:
        # One wake-up of the event loop per burst, not per token: while a wake-up is pending,
        # further events only join the backlog it will deliver. Text also waits while the
        # last wake-up is younger than the wake interval: each wake-up costs the owner thread
        # a trip through the OS scheduler (benchmarks/RESULTS.md, token_overhead). The first
        # text, the end and errors go at once.
        with self._backlog_lock:
            self._backlog.append((kind, payload))
            if self._wake_pending:
                return
            if not urgent and time.perf_counter() - self._last_wake < self._wake_interval_s:
                self._held = True
                return
            self._arm_wake()
        self._wake()

    def _arm_wake(self) -> None:
        """Under the backlog lock: a wake-up is about to be sent."""
        self._wake_pending = True
        self._held = False
        self._last_wake = time.perf_counter()

    def _wake(self) -> None:
        try:
            self._waker.call(self._deliver)
        except RuntimeError:  # the event loop is gone (server shutting down): nobody listens
            self._cancel.set()

    def _deliver(self) -> None:
        """On the event loop: move the backlog, in order, to the queue ``stream()`` reads."""
        with self._backlog_lock:
            events = list(self._backlog)
            self._backlog.clear()
            self._wake_pending = False
        for event in events:
            self._events.put_nowait(event)

    # -- called from the event loop ---------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    async def stream(self) -> AsyncIterator[str]:
        try:
            while True:
                kind, payload = await self._events.get()
                if kind == _TEXT:
                    yield payload  # type: ignore[misc]
                elif kind == _DONE:
                    assert isinstance(payload, GenerationResult)
                    self._result = payload
                    return
                else:
                    assert isinstance(payload, BaseException)
                    raise payload
        finally:
            if self._result is None:
                self.cancel()

    @property
    def result(self) -> GenerationResult:
        if self._result is None:
            raise EngineError("result read before the generation finished")
        return self._result


class Worker(Protocol):
    """What an ``OwnerThread`` drives. ``start``, ``step`` and ``fail_running`` run on the owner
    thread; ``can_start`` too, under the queue's lock; ``running`` and ``cancel_running`` may be
    called from any thread (a snapshot; a cooperative request)."""

    def running(self) -> int:
        """Jobs started and not yet finished."""
        ...

    def can_start(self, job: QueuedGeneration) -> bool:
        """Whether ``job`` may start now beside the running jobs (asked only while some run:
        with none running, the first waiting job always starts). Cheap: the lock is held."""
        ...

    def start(self, job: QueuedGeneration) -> None:
        """Begin ``job``; a serial worker runs it to its end here. Raising fails ``job``."""
        ...

    def step(self) -> None:
        """Advance the running jobs (one decode step), finishing those that end."""
        ...

    def cancel_running(self) -> None:
        """Ask every running job to stop at its next token (the engine is closing)."""
        ...

    def fail_running(self, error: EngineError) -> None:
        """End every running job with ``error`` (``step`` raised: the worker has a bug)."""
        ...


class SerialWorker:
    """One job at a time, from start to end, by ``execute`` (which emits and finishes it)."""

    def __init__(self, execute: Callable[[QueuedGeneration], None]) -> None:
        self._execute = execute
        self._job: QueuedGeneration | None = None

    def running(self) -> int:
        return 0 if self._job is None else 1

    def can_start(self, job: QueuedGeneration) -> bool:
        return self._job is None

    def start(self, job: QueuedGeneration) -> None:
        self._job = job
        try:
            self._execute(job)
        finally:
            self._job = None

    def step(self) -> None:
        """Nothing to advance: ``start`` ran the job to its end."""

    def cancel_running(self) -> None:
        job = self._job
        if job is not None:
            job.cancel()

    def fail_running(self, error: EngineError) -> None:
        """Nothing runs between steps: ``start`` ran the job to its end."""


class OwnerThread:
    """The thread that owns a model, and the bounded FIFO of jobs waiting for it."""

    def __init__(self, name: str, max_queue: int, worker: Worker) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._worker = worker
        self._max_queue = max_queue
        self._waiting: deque[QueuedGeneration] = deque()
        self._starting: QueuedGeneration | None = None  # out of the queue, inside worker.start
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- any thread ------------------------------------------------------------------------
    def submit(self, job: QueuedGeneration) -> None:
        """Queue ``job``, or raise at once: EngineClosedError, QueueFullError (-> 503)."""
        with self._cond:
            if self._closed:
                raise EngineClosedError("the engine is shut down")
            if len(self._waiting) >= self._max_queue:
                raise QueueFullError(len(self._waiting))
            self._waiting.append(job)
            self._cond.notify()

    def depth(self) -> int:
        """Requests waiting plus those running."""
        return len(self._waiting) + self._worker.running()

    def alive(self) -> bool:
        """Whether the owner thread is still running (a decode step cannot be interrupted)."""
        return self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """Fail everything queued, cancel what runs, and stop the thread once it has ended."""
        with self._cond:
            self._closed = True
            while self._waiting:
                self._waiting.popleft().fail(EngineClosedError("the engine shut down before this request ran"))
            starting = self._starting
            if starting is not None:
                starting.cancel()
            self._worker.cancel_running()
            self._cond.notify()
        self._thread.join(timeout)

    # -- owner thread ------------------------------------------------------------------------
    def _run(self) -> None:
        worker = self._worker
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not worker.running():
                    self._cond.wait()
                if self._closed and not worker.running():
                    return
                job = self._next_job()
            if job is not None:
                self._start(job)  # then look again: start all that fit before the next step
            elif worker.running():
                try:
                    worker.step()
                except Exception as exc:  # noqa: BLE001 - a bug of ours: fail the running jobs, keep the thread
                    log.exception("decode step failed")
                    error = exc if isinstance(exc, EngineError) else EngineError(f"generation failed: {exc}")
                    worker.fail_running(error)

    def _next_job(self) -> QueuedGeneration | None:
        """The first waiting job if it may start now (under the lock); jobs cancelled while
        they waited end here, never reaching the worker."""
        while self._waiting:
            job = self._waiting[0]
            if job.cancelled:
                self._waiting.popleft()
                job.finish(cancelled_before_start(job))
                continue
            if self._worker.running() and not self._worker.can_start(job):
                return None
            self._starting = self._waiting.popleft()
            return job
        return None

    def _start(self, job: QueuedGeneration) -> None:
        try:
            self._worker.start(job)
        except EngineError as exc:
            job.fail(exc)
        except Exception as exc:  # noqa: BLE001 - a bug of ours: report it to the caller
            log.exception("generation failed")
            job.fail(EngineError(f"generation failed: {exc}"))
        finally:
            self._starting = None


def cancelled_before_start(job: QueuedGeneration) -> GenerationResult:
    """The result of a job cancelled while it still waited in the queue."""
    return GenerationResult(
        text="",
        finish_reason="cancelled",
        prompt_tokens=len(job.prompt_tokens),
        completion_tokens=0,
        queued_s=time.perf_counter() - job.submitted_at,
    )
