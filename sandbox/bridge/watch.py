"""`RunWatch`: one run of code as the server sees it, a protocol state machine under a watchdog.

The states, and the only frames each accepts from the worker::

    running        ``call`` (checked, then started)  or  ``result`` carrying this run's token
    call waiting   nothing: the stub waits for its answer; any frame is a violation, unless
                   the run was interrupted (the stub then abandons its call: it is given up)
    (idle)         nothing, between runs (checked by `Sandbox` before the next run)

Anything else, a frame over the size this state allows, or one that does not decode, is a
`ProtocolViolation`: the worker is killed and the run reports it (the session is reset).

Why one select loop for everything: the watchdog (memory, CPU, processes, disk, cancel,
interrupt) must keep its beat while a call waits, or a run whose first statement is a call
goes unwatched for as long as the tool (or the client) takes. So the loop waits on the
worker's pipe, on a wake-up pipe that a call's future writes when it completes, and on room
in the pipe for a queued answer, and checks the limits on every tick in every state.

Time: the wall-clock limit is the code's own time, so it pauses while a call waits (the
call is bounded by its own deadline and the run's wait budget instead, see ``calls``). An
answer the worker does not read counts against the code's time: a worker that stops reading
its pipe is stopped by its own wall clock, and no write ever blocks the server.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sandbox import workspace
from sandbox.bridge import calls
from sandbox.bridge.calls import CallLog, HostCall
from sandbox.bridge.channel import ProtocolViolation, WorkerChannel, WorkerDied
from sandbox.host_calls import HostCallHandler
from sandbox.limits import Limits
from sandbox.result import KilledReason

#: First watchdog check after this long; most runs answer before it and pay nothing.
FIRST_POLL_S = 0.05
POLL_S = 0.1
#: How long an interrupted cell may take to unwind before the tree is killed.
INTERRUPT_GRACE_S = 2.0


@dataclass
class RunControl:
    """What other threads ask of the run in flight (`Sandbox.kill`, `Sandbox.interrupt`)."""

    cancel: KilledReason | None = None
    interrupt_at: float | None = None


@dataclass
class Outcome:
    """How a run ended: the worker's result frame, or why the tree must be killed."""

    reply: dict[str, Any] | None = None
    reason: KilledReason | None = None
    detail: str | None = None
    log: CallLog = field(default_factory=CallLog)
    #: The most memory and CPU seconds the watchdog saw the tree use (for the run's cost:
    #: a tree killed at the end can no longer be read).
    peak_memory: int = 0
    last_cpu: float = 0.0


class Usage(Protocol):
    """The tree's resource use, as the watchdog reads it (``WorkerProcess`` is one)."""

    def usage(self) -> tuple[int, float, int]:
        """(memory bytes, CPU seconds, process count) of the worker's tree."""
        ...


class _Wake:
    """A pipe that a call's future writes to when it completes, so the loop wakes at once.

    Closed under a lock: a future may complete after its run ended, and a write to a closed
    descriptor number could land in whatever file reused it.
    """

    def __init__(self) -> None:
        self.read_end, self._write_end = os.pipe()
        os.set_blocking(self.read_end, False)
        os.set_blocking(self._write_end, False)
        self._lock = threading.Lock()
        self._closed = False

    def poke(self) -> None:
        with self._lock:
            if not self._closed:
                with contextlib.suppress(OSError):  # full: the loop is woken already
                    os.write(self._write_end, b"x")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self.read_end, 64)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            os.close(self.read_end)
            os.close(self._write_end)


class RunWatch:
    """Drive one run to its outcome (see the module docstring)."""

    def __init__(
        self,
        channel: WorkerChannel,
        tree: Usage,
        limits: Limits,
        handler: HostCallHandler | None,
        control: RunControl,
        token: str,
        disk_root: Path,
    ) -> None:
        self.channel, self.tree, self.limits, self.handler = channel, tree, limits, handler
        self.control, self.token, self.disk_root = control, token, disk_root
        self.outcome = Outcome()
        self._call: HostCall | None = None
        self._base_cpu: float | None = None
        self._wake: _Wake | None = None
        self._next_disk_check = 0.0

    def wait(self, wall: float) -> Outcome:
        """Until the result, a violation or a broken limit; never raises for what the worker does."""
        try:
            return self._loop(time.monotonic() + wall, wall)
        except ProtocolViolation as exc:
            return self._end("crashed", f"The worker broke the sandbox protocol ({exc}), so it was stopped.")
        except WorkerDied:  # its pipe closed: killed by us (cancel, close) or it died (the caller says how)
            cancel = self.control.cancel
            return self._end(cancel or "crashed", None, "the execution was cancelled" if cancel else "the worker died")
        finally:
            self._close_wake()

    def _loop(self, deadline: float, wall: float) -> Outcome:
        next_watch = time.monotonic() + FIRST_POLL_S
        max_frame = self.limits.frame_bytes
        while True:
            frame = self.channel.take(max_frame)
            if frame is not None:
                done = self._on_frame(frame)
                if done is not None:
                    return done
                continue
            now = time.monotonic()
            call = self._call
            if call is not None and (call.future.done() or now >= call.deadline):
                answer = call.outcome(self.limits) if call.future.done() else call.timed_out()
                deadline += self._answer(answer)
                continue
            if self.control.cancel is not None:
                return self._end(self.control.cancel, None, "the execution was cancelled")
            if self.control.interrupt_at is not None and call is not None:
                deadline += self._answer(call.give_up("the execution was interrupted"))
                continue
            if call is None and now >= deadline:
                return self._end("timeout", f"Wall-clock limit: {wall:g} s.")
            if now >= next_watch:
                reason, detail = self._watch()
                if reason is not None:
                    return self._end(reason, detail, "the execution was stopped")
                next_watch = now + POLL_S
            until = min(next_watch, call.deadline if call is not None else deadline)
            ready = self.channel.wait(until - now, also=(self._wake.read_end,) if self._wake else ())
            if ready and self._wake is not None:
                self._wake.drain()

    def _on_frame(self, frame: dict[str, Any]) -> Outcome | None:
        op = frame.get("op")
        if self._call is not None:
            if self.control.interrupt_at is None:
                raise ProtocolViolation(f"a {str(op)[:40]!r} message while its tool call was waiting")
            # An interrupt makes the stub abandon its wait, and the code may go on before this
            # loop noticed the interrupt: the call is given up (the stub skips its answer).
            self._answer(self._call.give_up("the execution was interrupted"))
        if op == "result":
            if frame.get("id") != self.token:
                raise ProtocolViolation("a result that is not this run's")
            self.outcome.reply = frame
            return self.outcome
        if op != "call":
            return self._end("crashed", f"The worker sent a message the server does not accept ({str(op)[:40]!r}).")
        checked = calls.check(frame, self.handler, self.limits, self.outcome.log.waited_s)
        if isinstance(checked, calls.Answer):
            self._answer(checked)
            return None
        self._call = checked
        if self._wake is None:
            self._wake = _Wake()
        wake = self._wake
        checked.future.add_done_callback(lambda _: wake.poke())
        return None

    def _answer(self, answer: calls.Answer) -> float:
        """Queue the answer for the worker and record it; the seconds the call waited."""
        self._call = None
        self.outcome.log.add(answer.record)
        self.channel.queue(answer.reply)
        self.channel.flush()
        return answer.record.duration_s

    def _end(self, reason: KilledReason, detail: str | None, why: str = "the execution was stopped") -> Outcome:
        if self._call is not None:
            self.outcome.log.add(self._call.give_up(why).record)
            self._call = None
            if self.handler is not None and reason == "cancelled":
                self.handler.cancel()  # the client's parked calls of this session, too
        self.outcome.reason, self.outcome.detail = reason, detail
        return self.outcome

    def _watch(self) -> tuple[KilledReason | None, str | None]:
        """One watchdog tick: interrupt grace, memory, CPU, processes, disk."""
        if self._base_cpu is None:
            memory, self._base_cpu, _ = self.tree.usage()
            self._seen(memory, self._base_cpu)
            return None, None
        interrupted = self.control.interrupt_at
        if interrupted is not None and time.monotonic() - interrupted > INTERRUPT_GRACE_S:
            return "cancelled", "It did not stop after an interrupt."
        limits = self.limits
        memory, cpu, count = self.tree.usage()
        self._seen(memory, cpu)
        broken = limits.broken_by(memory, cpu - self._base_cpu, count, cpu_slack=1)
        if broken == "memory":
            return "memory", f"Memory limit: {limits.memory_mb} MB for the whole process tree."
        if broken == "cpu":
            return "timeout", f"CPU-time limit: {limits.cpu_seconds:g} s across all processes."
        if broken == "processes":
            return "processes", f"Process limit: {limits.max_processes}."
        if time.monotonic() >= self._next_disk_check:
            started = time.monotonic()
            used = workspace.disk_usage(self.disk_root)
            # A workspace of many files makes the walk slow, and it runs in the server's process:
            # its cost is held to about 5 % of this thread's time (the sum is checked at the end too).
            self._next_disk_check = time.monotonic() + 20 * (time.monotonic() - started)
            if used > limits.max_workspace_mb * 1024 * 1024:
                return "disk", f"Workspace limit: {limits.max_workspace_mb} MB."
        return None, None

    def _seen(self, memory: int, cpu: float) -> None:
        self.outcome.peak_memory = max(self.outcome.peak_memory, memory)
        self.outcome.last_cpu = max(self.outcome.last_cpu, cpu)

    def _close_wake(self) -> None:
        if self._wake is not None:
            self._wake.close()
            self._wake = None
