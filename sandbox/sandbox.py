"""`Sandbox`: one session's persistent, isolated Python worker.

Why the run loop polls: the wall-clock deadline, the tree's memory and CPU, the workspace
quota and a cancellation from another thread are all checked while waiting for the
worker's answer, and every one of them ends the same way: kill the whole tree, report
why, and start a fresh worker on the next `run` (state lost, workspace kept).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from sandbox import protocol, workspace
from sandbox.bridge.channel import WorkerDied
from sandbox.bridge.idle import IDLE_WATCH
from sandbox.bridge.watch import Outcome, RunControl, RunWatch
from sandbox.confine import isolation
from sandbox.errors import SandboxClosedError, SandboxError
from sandbox.host_calls import HostCallHandler
from sandbox.limits import Limits
from sandbox.process import WorkerProcess
from sandbox.result import ExecResult

log = logging.getLogger(__name__)

Policy = Literal["default", "restricted"]


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
        keep_processes: bool = False,
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
        #: Leave processes a cell started running after it ends (default: they end with it).
        self.keep_processes = keep_processes
        self._closed = False
        self._control = RunControl()
        self._pending_state_lost = False
        self._pending_detail: str | None = None
        #: No run or definition is in flight: the idle watch may check the tree.
        self._idle = False
        self._idle_base_cpu: float | None = None
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
        self._idle = True
        IDLE_WATCH.add(self)

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
        with self._run_lock, self._busy():
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
            self._idle = False
            self._control.cancel = "cancelled"
            proc = self._proc
        IDLE_WATCH.discard(self)
        if proc is not None:
            proc.kill()
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
            self._control.cancel = "cancelled"
            proc = self._proc
        if proc is not None:
            proc.kill()

    def interrupt(self) -> None:
        """KeyboardInterrupt into the running code (state kept); killed if it will not stop."""
        with self._state_lock:
            proc = self._proc
            self._control.interrupt_at = time.monotonic()
        if proc is not None and not proc.dead:
            proc.interrupt()

    # -- running -------------------------------------------------------------------
    def run(self, code: str, timeout: float | None = None) -> ExecResult:
        """Execute `code` in the session; never raises for anything the code does.

        Raises only for the caller's mistakes (`TypeError`, `SandboxClosedError`) and a worker
        that cannot be started (`SandboxStartError`); a bug of ours while the code runs
        becomes a crashed result with a fresh worker next time, logged, never an exception.
        """
        if not isinstance(code, str):
            raise TypeError("code must be a str")
        with self._run_lock, self._busy():
            if self._closed:
                raise SandboxClosedError("this sandbox is closed")
            self._control.cancel = None
            self._control.interrupt_at = None
            self._check_unasked()
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
            detail, self._pending_detail = self._pending_detail, None
            try:
                result = self._execute(self._proc, code, timeout or self.limits.wall_seconds)
            except Exception:  # noqa: BLE001 - see the docstring: our bug must not cost the session
                log.exception("running code in the sandbox failed")
                self._proc.kill()
                self._pending_state_lost = True
                result = ExecResult(killed_reason="crashed", state_lost=True, detail="The sandbox failed internally.")
            result.state_lost = result.state_lost or state_lost
            result.detail = _joined(detail, result.detail)
            return result

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        """While the worker serves us (a run, a definition), the idle watch leaves it alone."""
        with self._state_lock:
            self._idle = False
        try:
            yield
        finally:
            with self._state_lock:
                self._idle, self._idle_base_cpu = not self._closed, None

    def check_idle(self) -> None:
        """The idle watch's check (see sandbox/bridge/idle.py): between runs the tree's memory,
        processes and CPU hold to the limits too; a tree over one is killed, and the next run
        starts a fresh worker and says why."""
        with self._state_lock:
            proc = self._proc
            if not self._idle or proc is None or proc.dead:
                return
            memory, cpu, count = proc.usage()
            if self._idle_base_cpu is None:
                self._idle_base_cpu = cpu
            limits = self.limits
            broken = limits.broken_by(memory, cpu - self._idle_base_cpu, count)
            if broken is None:
                return
            why = {
                "memory": f"the code's processes used more than the {limits.memory_mb} MB memory limit",
                "cpu": f"the code kept computing after its cell ended (over {limits.cpu_seconds:g} s of CPU)",
                "processes": f"the code kept more than {limits.max_processes} processes",
            }[broken]
            proc.kill()
            self._pending_state_lost = True
            self._pending_detail = f"Between runs {why}, so the worker was stopped."
            log.info("sandbox stopped between runs: %s", why)

    def _check_unasked(self) -> None:
        """Between runs a worker sends nothing: if it did (a cell forged a result and went on,
        or left a thread writing frames), it is not trusted with the next run."""
        proc = self._proc
        if proc is None or proc.dead or not proc.channel.idle_input():
            return
        try:
            proc.channel.fill()
            unasked = proc.channel.buffered
        except WorkerDied:
            unasked = False
        proc.kill()
        if unasked:
            self._pending_detail = "The worker sent messages between runs that nobody asked for, so it was restarted."

    def _execute(self, proc: WorkerProcess, code: str, wall: float) -> ExecResult:
        started = time.monotonic()
        token = secrets.token_hex(8)
        watch = RunWatch(proc.channel, proc, self.limits, self.host_calls, self._control, token, self._dirs.root)
        _, cpu_before, _ = proc.usage()
        peak_kept = proc.reset_peak()
        proc.channel.queue({"op": "run", "id": token, "code": code, "hard_cap": self.limits.output_hard_cap})
        outcome = watch.wait(wall)
        cost = _cost(proc, outcome, cpu_before, peak_kept)  # before a kill: a dead tree reads as nothing
        if outcome.reason == "crashed" and outcome.detail is None:
            outcome.detail = _exit_detail(proc)
        reply = outcome.reply
        if outcome.reason is not None or reply is None:
            proc.kill()
            self._pending_state_lost = True
            reason = outcome.reason or "crashed"
            result = ExecResult(
                killed_reason=reason, timed_out=reason == "timeout", state_lost=True, detail=outcome.detail
            )
        else:
            result = self._result_of(reply)
            if not self.keep_processes:
                ended = proc.end_strays()
                if ended:
                    result.detail = _joined(
                        result.detail,
                        f"{ended} process{'es' if ended > 1 else ''} the code started and left running "
                        f"{'were' if ended > 1 else 'was'} ended with the cell.",
                    )
        result.host_calls = outcome.log.records
        result.host_calls_omitted = outcome.log.omitted
        result.duration_s = time.monotonic() - started
        result.cpu_ms, result.peak_memory_mb = cost
        self._collect_files(result)
        return result

    def _result_of(self, reply: dict[str, Any]) -> ExecResult:
        """The worker's result frame as an `ExecResult`, its output held to the limit here too:
        the frame may be forged, so the worker's own truncation is not relied on."""
        limit = self.limits.max_output_bytes
        texts = {name: reply.get(name) for name in ("stdout", "stderr", "error")}
        kept = {name: _capped(value, limit) if isinstance(value, str) else None for name, value in texts.items()}
        result = ExecResult(
            stdout=kept["stdout"] or "",
            stderr=kept["stderr"] or "",
            error=kept["error"],
            truncated=bool(reply.get("truncated")) or any(kept[n] is not texts[n] for n in ("stdout", "stderr")),
        )
        if reply.get("output_limit"):
            result.killed_reason = "output"
        if reply.get("cpu_limit"):
            result.killed_reason, result.timed_out = "timeout", True
            result.detail = f"CPU-time limit: {self.limits.cpu_seconds:g} s."
        return result

    def _collect_files(self, result: ExecResult) -> None:
        after, _ = workspace.snapshot(self._dirs.workspace)
        result.files = workspace.changed(self._snapshot, after)
        self._snapshot = after
        used = workspace.disk_usage(self._dirs.root)
        if used > self.limits.max_workspace_mb * 1024 * 1024:
            for relative in result.files:
                (self._dirs.workspace / relative).unlink(missing_ok=True)
            result.detail = _joined(
                result.detail,
                f"The workspace went over its {self.limits.max_workspace_mb} MB limit, so the "
                f"files this run wrote were deleted: {', '.join(result.files) or '(none)'}.",
            )
            if result.killed_reason is None:
                result.killed_reason = "disk"
            result.files = []
            self._snapshot, _ = workspace.snapshot(self._dirs.workspace)


def _cost(proc: WorkerProcess, outcome: Outcome, cpu_before: float, peak_kept: bool) -> tuple[float, float]:
    """(CPU milliseconds, peak memory in MB) of one run of the worker's tree.

    CPU: the tree's user and system time (and its waited-for children's) since the run began,
    or as the watchdog last saw it if the tree is gone. Memory: the highest of what the
    watchdog saw of the whole tree, the tree at the end, and the worker's own kernel-kept peak
    (exact, where `reset_peak` was allowed: an allocation freed between two looks counts).
    """
    memory, cpu_after, _ = proc.usage()
    cpu = max(cpu_after, outcome.last_cpu) - cpu_before
    peak = max(memory, outcome.peak_memory, proc.peak_rss() if peak_kept else 0)
    return round(max(cpu, 0.0) * 1000, 1), round(peak / (1024 * 1024), 1)


def _capped(text: str, limit: int) -> str:
    """`text` when it is within `limit` UTF-8 bytes (the same object), else its head and tail."""
    if len(text) <= limit // 4 or len(text.encode("utf-8", "replace")) <= limit + 512:
        return text
    return protocol.head_and_tail(text, limit)


def _joined(*parts: str | None) -> str | None:
    return " ".join(p for p in parts if p) or None


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
