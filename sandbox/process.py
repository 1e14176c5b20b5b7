"""One running worker process as seen from the server: start, talk, watch, kill.

Why a dedicated spawner thread: the parent-death signal (ours in the worker, and
bubblewrap's `--die-with-parent`) fires when the *thread* that forked the child exits, not
the process. Pools refill from background threads and web servers run handlers on
short-lived threads, so every worker is forked from one daemon thread that lives as long
as the server process.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Set
from concurrent.futures import Future
from typing import Any

import psutil

from sandbox.bridge.channel import WorkerChannel, WorkerDied
from sandbox.confine.plan import Plan
from sandbox.errors import SandboxStartError

STARTUP_TIMEOUT = 30.0
#: How long a control message (configure, define) and its reply may take.
CONTROL_TIMEOUT_S = 10.0
KILL_WAIT_S = 5.0  # how long kill() waits for the killed processes to be gone


class _Spawner:
    """Runs `subprocess.Popen` on one long-lived daemon thread."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def spawn(self, factory: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="sandbox-spawner", daemon=True)
                self._thread.start()
        future: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((factory, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            factory, future = self._jobs.get()
            try:
                future.set_result(factory())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)


SPAWNER = _Spawner()


class WorkerProcess:
    """A started worker (maybe wrapped in bubblewrap) and its framed pipes."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        argv, pass_fds = list(plan.argv), tuple[int, ...]()
        self._lifeline: int | None = None
        if plan.level != "namespaces":
            # Without a pid namespace, grandchildren of the code would outlive a SIGKILLed
            # server; the worker's reaper kills its process group when this pipe closes.
            read_end, self._lifeline = os.pipe()
            config = json.loads(argv[-1])
            config["lifeline_fd"] = read_end
            argv[-1] = json.dumps(config)
            pass_fds = (read_end,)
        try:
            self.popen = SPAWNER.spawn(
                lambda: subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=plan.env,
                    cwd=plan.cwd,
                    close_fds=True,
                    process_group=0,
                    pass_fds=pass_fds,
                )
            )
        except OSError as exc:
            raise SandboxStartError(f"could not start the sandbox worker: {exc}") from exc
        finally:
            if pass_fds:
                os.close(pass_fds[0])
        assert self.popen.stdin and self.popen.stdout and self.popen.stderr
        self.channel = WorkerChannel(self.popen.stdin.fileno(), self.popen.stdout.fileno())
        self.dead = False
        try:
            ready = self.receive(time.monotonic() + STARTUP_TIMEOUT)
        except (WorkerDied, TimeoutError) as exc:
            detail = self._stderr_text()
            self.kill()
            raise SandboxStartError(f"sandbox worker failed to start ({exc}): {detail}") from exc
        if ready is None or ready.get("op") != "ready":
            self.kill()
            raise SandboxStartError(f"unexpected first message from worker: {ready!r}")
        self.popen.stderr.close()  # the worker moved its fd 2 to the capture pipe
        self.pid = self._find_worker_pid()
        #: The worker's own helper (the lifeline reaper), told before any code ran: not a stray.
        self.helpers = {int(ready["reaper"])} if isinstance(ready.get("reaper"), int) else set()
        self._chain: set[int] | None = None  # the launcher down to the worker (see `strays`)

    def _stderr_text(self) -> str:
        assert self.popen.stderr
        try:
            os.set_blocking(self.popen.stderr.fileno(), False)
            return (self.popen.stderr.read() or b"").decode(errors="replace").strip()[-2000:]
        except (OSError, ValueError):
            return ""

    def _find_worker_pid(self) -> int:
        """Host pid of the Python worker (under bubblewrap it is a grandchild)."""
        if self.plan.level != "namespaces":
            return self.popen.pid
        try:
            for child in psutil.Process(self.popen.pid).children(recursive=True):
                cmdline = child.cmdline()
                if cmdline and cmdline[0] != self.plan.argv[0] and self.plan.argv[-2] in cmdline:
                    return int(child.pid)
        except psutil.Error:
            pass
        return self.popen.pid

    def send(self, message: dict[str, Any], timeout: float = CONTROL_TIMEOUT_S) -> None:
        """Write a frame; ProtocolViolation when the worker does not take it within `timeout`."""
        try:
            self.channel.send(message, time.monotonic() + timeout)
        except WorkerDied:
            self.dead = True
            raise

    def receive(self, deadline: float, poll: float | None = None) -> dict[str, Any] | None:
        """Next frame; None when `poll` seconds passed first. TimeoutError at `deadline`."""
        try:
            frame: dict[str, Any] | None = self.channel.receive(deadline, poll)
        except WorkerDied:
            self.dead = True
            raise
        return frame

    def request(self, message: dict[str, Any], timeout: float = CONTROL_TIMEOUT_S) -> dict[str, Any]:
        """Send and wait for the reply (used for short control messages)."""
        deadline = time.monotonic() + timeout
        self.send(message, timeout)
        reply = self.receive(deadline)
        assert reply is not None
        return reply

    def interrupt(self) -> None:
        """SIGINT to the worker: KeyboardInterrupt in the running cell, state kept."""
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGINT)

    def tree(self) -> list[psutil.Process]:
        """The launcher and every descendant still alive, found from the kernel's per-task
        child lists (psutil's recursive children scans every process on the machine)."""
        found: list[psutil.Process] = []
        for pid in [self.popen.pid, *_descendants([self.popen.pid])]:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
        return found

    def usage(self) -> tuple[int, float, int]:
        """(memory bytes, CPU seconds, process count) of the tree.

        Memory counts the worker's RSS plus other processes' non-shared RSS, so forked
        copies sharing pages with the worker are not counted many times. CPU counts the
        children each process waited for too: a child that burned CPU and exited between
        two looks still counts against the limit (and in the step's cost).
        """
        memory, cpu, count = 0, 0.0, 0
        for proc in self.tree():
            try:
                with proc.oneshot():
                    info = proc.memory_info()
                    times = proc.cpu_times()
                    memory += info.rss if proc.pid == self.pid else max(info.rss - info.shared, 0)
                    cpu += times.user + times.system + times.children_user + times.children_system
                    count += 1
            except psutil.Error:
                continue
        return memory, cpu, count

    def reset_peak(self) -> bool:
        """Start the worker's peak resident memory (the kernel's ``VmHWM``) afresh, so that
        `peak_rss` after a run is that run's peak; False where the kernel does not let us."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            return False
        return True

    def peak_rss(self) -> int:
        """The worker's peak resident memory in bytes since `reset_peak` (0: unreadable).

        The kernel keeps it at every page fault, so an allocation freed between two watchdog
        looks is still seen (the looks sample the whole tree only every ``POLL_S``).
        """
        try:
            with open(f"/proc/{self.pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def kill(self) -> None:
        """SIGKILL the whole tree: the process group, then any escaped descendant."""
        self.dead = True
        procs = self.tree()
        with contextlib.suppress(OSError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self.plan.uid is not None:  # the uid is ours alone: catch escaped daemons too
            procs += [
                p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == self.plan.uid
            ]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        _wait_dead(procs, KILL_WAIT_S)
        if self._lifeline is not None:
            with contextlib.suppress(OSError):
                os.close(self._lifeline)
            self._lifeline = None
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        """Kill the tree. No goodbye frame first: a worker that stopped reading its pipe made
        that write block forever, and the worker keeps nothing that a kill would lose."""
        self.kill()

    def strays(self) -> list[psutil.Process]:
        """Processes the code started that are still alive: every descendant of the launcher
        but the chain down to the worker and the worker's helper.

        Read from the kernel's per-task child lists, a few small files when there are no
        strays, not from a scan of every process (which cost 2.5 ms a run, 7x a small cell).
        Where there is no pid namespace, a process that daemonized out of the tree is not
        found here: it is ended with the session (`kill` looks for the sandbox uid's).
        """
        if self._chain is None:
            try:
                above = [p.pid for p in psutil.Process(self.pid).parents()]
            except psutil.Error:
                above = []
            self._chain = {
                self.popen.pid,
                self.pid,
                *above[: above.index(self.popen.pid) + 1 if self.popen.pid in above else 0],
            }
        found: list[psutil.Process] = []
        for pid in _descendants(self._chain, skip=self._chain | self.helpers):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        return found

    def end_strays(self) -> int:
        """Kill what `strays` finds (a cell's leftover processes); how many there were."""
        found = self.strays()
        for proc in found:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _wait_dead(found, KILL_WAIT_S)
        return len(found)


def _descendants(roots: Iterable[int], skip: Set[int] = frozenset()) -> list[int]:
    """Every descendant of `roots`, breadth first; a pid in `skip` is left out with its subtree."""
    found = [child for root in roots for child in _children(root) if child not in skip]
    for pid in found:  # grows as it goes
        found.extend(child for child in _children(pid) if child not in skip)
    return found


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, any of its threads' (Linux's /proc/PID/task/TID/children)."""
    if not _PROC_CHILDREN:
        with contextlib.suppress(psutil.Error):
            return [p.pid for p in psutil.Process(pid).children()]
        return []
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as listing:
                found.extend(int(child) for child in listing.read().split())
    return found


_PROC_CHILDREN = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def _wait_dead(procs: list[psutil.Process], timeout: float) -> None:
    """Until every killed process is gone or a zombie: SIGKILL takes effect when the process
    next runs, which on a loaded machine can be after ``kill`` returned (a busy grandchild was
    seen still running), and a caller told the tree is dead may count on it."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        while time.monotonic() < deadline:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.Error:  # gone (or no longer ours to see)
                break
            time.sleep(0.01)
