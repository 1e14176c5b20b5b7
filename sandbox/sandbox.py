"""`Sandbox`: one session's persistent, isolated Python worker.

Why the run loop polls: the wall-clock deadline, the tree's memory and CPU, the workspace
quota and a cancellation from another thread are all checked while waiting for the
worker's answer, and every one of them ends the same way: kill the whole tree, report
why, and start a fresh worker on the next `run` (state lost, workspace kept).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Literal

from sandbox import host_calls, workspace
from sandbox.confine import isolation
from sandbox.errors import SandboxClosedError, SandboxError
from sandbox.host_calls import HostCallHandler, HostCallRecord
from sandbox.limits import Limits
from sandbox.process import WorkerDied, WorkerProcess
from sandbox.result import ExecResult, KilledReason

log = logging.getLogger(__name__)

Policy = Literal["default", "restricted"]

#: First watchdog check after this long; most runs answer before it and pay nothing.
FIRST_POLL_S = 0.05
POLL_S = 0.1
#: How long an interrupted cell may take to unwind before the tree is killed.
INTERRUPT_GRACE_S = 2.0


class Sandbox:
    """An isolated Python session: `run` code, keep state, confine it to `workspace`.

    One thread at a time may call `run`; `interrupt`, `kill` and `close` may be called from
    any other thread while it blocks.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        network: bool = False,
        policy: Policy = "default",
        *,
        isolation_level: isolation.Requested = "auto",
        workspace_root: Path | None = None,
        python: str | None = None,
        _prestarted: tuple[workspace.SessionDirs, int | None, WorkerProcess, isolation.Level] | None = None,
    ) -> None:
        if policy not in ("default", "restricted"):
            raise ValueError(f"unknown policy {policy!r}")
        self.limits = limits or Limits()
        self.network = network
        self.policy: Policy = policy
        #: Interpreter the worker runs in (the sandbox environment's); None = the server's.
        self.python = python
        self._run_lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._closed = False
        self._cancel: KilledReason | None = None
        self._interrupt_at: float | None = None
        self._pending_state_lost = False
        #: Answers the code's calls of tools outside the sandbox (None: it has none).
        self.host_calls: HostCallHandler | None = None
        self._definitions: list[str] = []
        if _prestarted is not None:
            self._dirs, self._uid, self._proc, level = _prestarted
            self.isolation: isolation.Level = level
        else:
            self.isolation = isolation.detect(isolation_level, python)
            wants_uid = isolation.wants_uid(self.isolation, python)
            self._uid = isolation.UIDS.acquire() if wants_uid else None
            self._dirs = workspace.SessionDirs.create(workspace_root, self._uid)
            self._proc = None  # type: ignore[assignment]
        try:
            if self._proc is None:
                self._proc = self._start()
            else:
                self._configure(self._proc)
        except BaseException:
            if self._proc is not None:
                self._proc.kill()
            self._release()
            raise
        self._snapshot, _ = workspace.snapshot(self._dirs.workspace)

    # -- properties ----------------------------------------------------------------
    @property
    def workspace(self) -> Path:
        """The code's working directory and the only writable directory that persists."""
        return self._dirs.workspace

    @property
    def pid(self) -> int | None:
        """Host pid of the current worker process (None when none is running)."""
        proc = self._proc
        return None if proc is None or proc.dead else proc.pid

    @property
    def closed(self) -> bool:
        return self._closed

    # -- lifecycle -----------------------------------------------------------------
    def _start(self) -> WorkerProcess:
        plan = isolation.plan(
            self.isolation,
            self._dirs.workspace,
            self._dirs.tmp,
            self.network,
            self._uid,
            python=self.python,
        )
        proc = WorkerProcess(plan)
        self._configure(proc)
        return proc

    def _configure(self, proc: WorkerProcess) -> None:
        proc.request({"op": "configure", "limits": self.limits.to_json(), "policy": self.policy})
        for source in self._definitions:
            self._define_in(proc, source)

    def define(self, source: str) -> None:
        """Define the server's own functions (host-tool stubs) in the namespace, for good.

        Unlike code given to `run`, the definitions come back after a worker restart, so the
        tools the system prompt promised stay defined. Raises SandboxError if they fail.
        """
        with self._run_lock:
            if self._closed:
                raise SandboxClosedError("this sandbox is closed")
            if self._proc is not None and not self._proc.dead:
                self._define_in(self._proc, source)
            self._definitions.append(source)

    @staticmethod
    def _define_in(proc: WorkerProcess, source: str) -> None:
        reply = proc.request({"op": "define", "source": source})
        if reply.get("op") != "defined" or reply.get("error"):
            raise SandboxError(f"defining the session's tools failed: {reply.get('error') or reply!r}")

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker and delete the workspace. Safe from any thread, idempotent."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            self._cancel = "cancelled"
            proc = self._proc
        if proc is not None:
            proc.close()
        if self.host_calls is not None:
            self.host_calls.cancel()
        # Wait for a run in flight to notice, so the workspace is not removed under it.
        if self._run_lock.acquire(timeout=10):
            self._run_lock.release()
        self._release()

    def _release(self) -> None:
        self._dirs.remove()
        isolation.UIDS.release(self._uid)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):  # interpreter shutdown
                self.close()

    def kill(self) -> None:
        """Kill the running code now (from any thread); `run` returns killed_reason="cancelled"."""
        with self._state_lock:
            self._cancel = "cancelled"
            proc = self._proc
        if proc is not None:
            proc.kill()

    def interrupt(self) -> None:
        """KeyboardInterrupt into the running code (state kept); killed if it will not stop."""
        with self._state_lock:
            proc = self._proc
            self._interrupt_at = time.monotonic()
        if proc is not None and not proc.dead:
            proc.interrupt()

    # -- running -------------------------------------------------------------------
    def run(self, code: str, timeout: float | None = None) -> ExecResult:
        """Execute `code` in the session; never raises for anything the code does."""
        if not isinstance(code, str):
            raise TypeError("code must be a str")
        with self._run_lock:
            if self._closed:
                raise SandboxClosedError("this sandbox is closed")
            self._cancel = None
            self._interrupt_at = None
            state_lost = self._pending_state_lost
            if self._proc is None or self._proc.dead:
                state_lost = True
                if self._proc is not None:
                    self._proc.kill()
                proc = self._start()
                with self._state_lock:
                    if self._closed:
                        proc.close()
                        raise SandboxClosedError("this sandbox was closed")
                    self._proc = proc
            self._pending_state_lost = False
            result = self._execute(self._proc, code, timeout or self.limits.wall_seconds)
            result.state_lost = result.state_lost or state_lost
            return result

    def _execute(self, proc: WorkerProcess, code: str, wall: float) -> ExecResult:
        started = time.monotonic()
        reason: KilledReason | None = None
        detail: str | None = None
        reply: dict[str, Any] | None = None
        calls: list[HostCallRecord] = []
        try:
            proc.send({"op": "run", "id": 1, "code": code, "hard_cap": self.limits.output_hard_cap})
            reply, reason, detail = self._await_result(proc, started + wall, calls)
        except TimeoutError:
            reason, detail = "timeout", f"Wall-clock limit: {wall:g} s."
        except WorkerDied:
            reason = self._cancel or "crashed"
            if reason == "crashed":
                detail = _exit_detail(proc)
        if reason is not None or reply is None:
            proc.kill()
            self._pending_state_lost = True
            result = ExecResult(
                killed_reason=reason or "crashed", timed_out=reason == "timeout", state_lost=True, detail=detail
            )
        else:
            result = ExecResult(
                stdout=str(reply.get("stdout", "")),
                stderr=str(reply.get("stderr", "")),
                error=reply.get("error") if isinstance(reply.get("error"), str) else None,
                truncated=bool(reply.get("truncated")),
            )
            if reply.get("output_limit"):
                result.killed_reason = "output"
            if reply.get("cpu_limit"):
                result.killed_reason, result.timed_out = "timeout", True
                result.detail = f"CPU-time limit: {self.limits.cpu_seconds:g} s."
        result.host_calls = calls
        result.duration_s = time.monotonic() - started
        self._collect_files(result)
        return result

    def _await_result(
        self, proc: WorkerProcess, deadline: float, calls: list[HostCallRecord]
    ) -> tuple[dict[str, Any] | None, KilledReason | None, str | None]:
        """Wait for the run's result frame, answering host calls and watching the limits.

        Time spent waiting for a host call moves the wall-clock deadline: the code is not
        running then. Any frame other than a call or the result is a protocol violation.
        """
        base_cpu: float | None = None
        last_watch = 0.0
        killed: list[tuple[KilledReason, str | None]] = []

        def stop_call() -> str | None:
            nonlocal last_watch
            if self._cancel is not None:
                killed.append((self._cancel, None))
                return "the execution was cancelled"
            if self._interrupt_at is not None:
                return "the execution was interrupted"
            now = time.monotonic()
            if base_cpu is not None and now - last_watch >= POLL_S:
                last_watch = now
                why, why_detail = self._watch(proc, base_cpu)
                if why is not None:
                    killed.append((why, why_detail))
                    return "the execution was stopped"
            return None

        while True:
            frame = proc.receive(deadline, poll=FIRST_POLL_S if base_cpu is None else POLL_S)
            if frame is None:
                if base_cpu is None:
                    _, base_cpu, _ = proc.usage()
                    continue
                reason, detail = self._watch(proc, base_cpu)
                if reason is not None:
                    return None, reason, detail
            elif frame.get("op") == "call":
                outcome = host_calls.answer(frame, self.host_calls, self.limits, stop_call)
                calls.append(outcome.record)
                deadline += outcome.waited_s
                if killed:
                    return None, *killed[0]
                proc.send(outcome.reply)
            elif frame.get("op") == "result":
                return frame, None, None
            else:
                return None, "crashed", "The worker sent a message the server does not accept."

    def _watch(self, proc: WorkerProcess, base_cpu: float) -> tuple[KilledReason | None, str | None]:
        """One watchdog tick while the code runs: cancel, interrupt, memory, CPU, processes, disk."""
        if self._cancel is not None:
            return self._cancel, None
        if self._interrupt_at is not None and time.monotonic() - self._interrupt_at > INTERRUPT_GRACE_S:
            return "cancelled", "It did not stop after an interrupt."
        limits = self.limits
        memory, cpu, count = proc.usage()
        if memory > limits.memory_mb * 1024 * 1024:
            return "memory", f"Memory limit: {limits.memory_mb} MB for the whole process tree."
        if cpu - base_cpu > limits.cpu_seconds + 1:
            return "timeout", f"CPU-time limit: {limits.cpu_seconds:g} s across all processes."
        if count > limits.max_processes + 3:
            return "processes", f"Process limit: {limits.max_processes}."
        if workspace.disk_usage(self._dirs.root) > limits.max_workspace_mb * 1024 * 1024:
            return "disk", f"Workspace limit: {limits.max_workspace_mb} MB."
        return None, None

    def _collect_files(self, result: ExecResult) -> None:
        after, _ = workspace.snapshot(self._dirs.workspace)
        result.files = workspace.changed(self._snapshot, after)
        self._snapshot = after
        used = workspace.disk_usage(self._dirs.root)
        if used > self.limits.max_workspace_mb * 1024 * 1024:
            for relative in result.files:
                (self._dirs.workspace / relative).unlink(missing_ok=True)
            result.detail = " ".join(
                filter(
                    None,
                    [
                        result.detail,
                        (
                            f"The workspace went over its {self.limits.max_workspace_mb} MB limit, so the "
                            f"files this run wrote were deleted: {', '.join(result.files) or '(none)'}."
                        ),
                    ],
                )
            )
            if result.killed_reason is None:
                result.killed_reason = "disk"
            result.files = []
            self._snapshot, _ = workspace.snapshot(self._dirs.workspace)


def _exit_detail(proc: WorkerProcess) -> str | None:
    try:
        code = proc.popen.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return None
    if code is None:
        return None
    import signal

    signum = -code if code < 0 else code - 128 if proc.plan.level == "namespaces" and code > 128 else 0
    if signum in signal.Signals._value2member_map_:
        return f"The worker was terminated by {signal.Signals(signum).name}."
    return f"The worker exited with status {code}."
