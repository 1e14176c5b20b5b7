"""One owner thread per loaded model, a bounded FIFO queue in front of it.

llama.cpp contexts are not thread-safe, so exactly one thread ever touches a model. The
event loop submits jobs; the owner thread runs them one at a time and hands text back through
``models.engine.wakeup`` (a wake-up that keeps the GIL, so the event loop's share of a token
runs beside the next decode instead of in front of it). A full queue is refused at submit
time (the HTTP layer turns that into 503 + Retry-After) — we never interrupt a running
request to serve a new one.
Both the llama.cpp engine and the scripted fake run on this, so queueing and cancellation
behave identically in deterministic tests and in production.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from models.engine.api import (
    EngineClosedError,
    EngineError,
    GenerationRequest,
    GenerationResult,
    QueueFullError,
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

    def __init__(
        self, request: GenerationRequest, prompt_tokens: list[int], *, wake_interval_s: float = 0.0
    ) -> None:
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
        self._last_wake = 0.0
        self._held = False  # text in the backlog that waits for the wake interval
        self._cancel = threading.Event()
        self._result: GenerationResult | None = None

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


class OwnerThread:
    """Runs jobs one at a time on a dedicated thread, behind a bounded queue."""

    def __init__(
        self, name: str, max_queue: int, execute: Callable[[QueuedGeneration], None]
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._execute = execute
        self._queue: queue.Queue[QueuedGeneration | None] = queue.Queue(maxsize=max_queue)
        self._running: QueuedGeneration | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: QueuedGeneration) -> None:
        if self._closed:
            raise EngineClosedError("the engine is shut down")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(self._queue.qsize()) from None

    def alive(self) -> bool:
        """Whether the owner thread is still running (a prompt decode cannot be interrupted)."""
        return self._thread.is_alive()

    def depth(self) -> int:
        return self._queue.qsize() + (1 if self._running is not None else 0)

    def close(self, timeout: float = 10.0) -> None:
        """Cancel the running job and everything queued, then stop the thread."""
        self._closed = True
        if self._running is not None:
            self._running.cancel()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.fail(EngineClosedError("the engine shut down before this request ran"))
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.cancelled:
                job.finish(cancelled_before_start(job))
                continue
            self._running = job
            try:
                self._execute(job)
            except EngineError as exc:
                job.fail(exc)
            except Exception as exc:  # noqa: BLE001 - a bug of ours: report it to the caller
                log.exception("generation failed")
                job.fail(EngineError(f"generation failed: {exc}"))
            finally:
                self._running = None


def cancelled_before_start(job: QueuedGeneration) -> GenerationResult:
    """The result of a job cancelled while it still waited in the queue."""
    return GenerationResult(
        text="",
        finish_reason="cancelled",
        prompt_tokens=len(job.prompt_tokens),
        completion_tokens=0,
        queued_s=time.perf_counter() - job.submitted_at,
    )
