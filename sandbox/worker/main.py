"""The worker: one process per sandbox, executing cells in a persistent namespace.

Started by the server as `python -I <this file> <json config>`, possibly inside bubblewrap.
Why it looks the way it does:
- It drops privileges itself (uid/gid, no_new_privs, parent-death signal) before reading
  any request, so the server never needs a `preexec_fn` and the order is right: the
  parent-death signal must be set *after* the uid change, which clears it.
- The protocol pipes move off fds 0/1 to private non-inheritable fds; fds 1/2 become pipes
  drained into the capture buffers, so child processes cannot write protocol frames by
  accident and their output still reaches the result.
- Rlimits arrive in the first `configure` message, so a pre-started worker in the pool can
  serve any limits.
- Imports are stdlib-only and few: start-up time is a new session's latency. The worker
  may run in another interpreter than the server's (the sandbox environment, see
  `sandbox/environment.py`): the directory holding the `sandbox` package is on `sys.path` only while the
  worker imports its own modules, so agent code cannot import the server's packages
  (`server`, `models`) that sit beside `sandbox/`.
- A pooled worker may be asked to `preimport` modules (numpy, pandas, pyplot) before any
  session gets it, so a session's first plot does not pay for the imports.
"""

from __future__ import annotations

import os
import sys

_HOME = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, _HOME)

import importlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from sandbox import protocol  # noqa: E402
from sandbox.worker import execute  # noqa: E402
from sandbox.worker.capture import Capture, CaptureWriter, OutputLimitExceeded  # noqa: E402
from sandbox.worker.host_stub import UNSET, HostStub  # noqa: E402

# Later `sandbox.*` imports (mpl_backend, restricted) resolve through the package's __path__.
sys.path.remove(_HOME)

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
MAIN_PID = os.getpid()


class CPUTimeExceeded(BaseException):
    """Raised into user code on SIGXCPU (the per-run CPU-seconds soft limit)."""


_in_user_code = False


def _on_sigint(signum: int, frame: Any) -> None:
    if _in_user_code:
        raise KeyboardInterrupt


def _on_sigxcpu(signum: int, frame: Any) -> None:
    if _in_user_code:
        raise CPUTimeExceeded("CPU time limit for this run exceeded")


def _prctl(option: int, value: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def drop_privileges(config: dict[str, Any]) -> None:
    """Become the sandbox uid, forbid regaining privileges, die with the parent."""
    uid: int | None = config.get("uid")
    if uid is not None and os.getuid() == 0:
        gid: int = config.get("gid", uid)  # the plan sends both; a uid's own group otherwise
        if config.get("keep_read_search"):
            from sandbox.confine import capabilities  # landlock level, interpreter unreadable by the uid

            capabilities.become(uid, gid, capabilities.CAP_DAC_READ_SEARCH)
        else:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
    # Only now: as root without CAP_DAC_OVERRIDE the 0700 workspace is not enterable.
    os.chdir(config.get("cwd") or ".")
    os.environ["PWD"] = os.getcwd()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    expected_parent = config.get("parent_pid")
    if expected_parent and os.getppid() != expected_parent:
        os._exit(3)  # The server died before the death signal was armed.


def start_reaper(lifeline_fd: int | None) -> int | None:
    """Fork a tiny reaper that kills our whole process group once the server is gone.

    Used without a pid namespace, where the parent-death signal reaches the worker but not
    the processes the code started. The server holds the only write end of the lifeline
    pipe, so end-of-file means the server exited or closed this sandbox, however it died.
    Forked before any thread exists, and before any user code runs.
    """
    if lifeline_fd is None:
        return None
    pid = os.fork()
    if pid == 0:
        try:
            os.closerange(0, lifeline_fd)
            os.closerange(lifeline_fd + 1, 65536)
            while os.read(lifeline_fd, 1):
                pass
        finally:
            try:
                os.killpg(0, signal.SIGKILL)
            finally:
                os._exit(0)
    os.close(lifeline_fd)
    return pid


def confine(rules: dict[str, Any] | None) -> None:
    """The ``landlock`` level: Landlock, then seccomp (see sandbox/confine/isolation.py).

    Here because Landlock binds only the calling thread and its later children: the worker
    is still single-threaded (no capture threads yet) and no user code has run. A failure
    raises, so the worker never runs code less confined than the level it reports.
    """
    if rules is None:
        return
    from sandbox.confine import capabilities, landlock, seccomp

    landlock.restrict(list(rules["read"]), list(rules["write"]), bool(rules["network"]))
    seccomp.install(bool(rules["network"]))
    if os.geteuid() == 0:  # no uid of its own: at least no capability (see capabilities.py)
        capabilities.drop_all()


def apply_limits(limits: dict[str, Any]) -> None:
    """Set rlimits; CPU is re-armed per run because RLIMIT_CPU counts the process's life."""
    mb = 1024 * 1024
    settings = {
        resource.RLIMIT_AS: int(limits["memory_mb"]) * mb,
        resource.RLIMIT_FSIZE: int(limits["max_file_mb"]) * mb,
        resource.RLIMIT_NOFILE: max(int(limits["max_open_files"]), 32),
        resource.RLIMIT_NPROC: max(int(limits["max_processes"]), 4),
        resource.RLIMIT_CORE: 0,
    }
    for which, value in settings.items():
        resource.setrlimit(which, (value, value))
    used = _cpu_used()
    lifetime = int(used + 100 * float(limits["cpu_seconds"]) + 60)
    resource.setrlimit(resource.RLIMIT_CPU, (lifetime, lifetime))


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _arm_cpu(cpu_seconds: float) -> None:
    soft = int(_cpu_used() + cpu_seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


class Worker:
    """State of one worker: the namespace, the capture, the active policy."""

    def __init__(self, proto_in: int, proto_out: int, capture: Capture) -> None:
        self.proto_in, self.proto_out = proto_in, proto_out
        self.capture = capture
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.limits: dict[str, Any] = {}
        self.compiler: Any = None
        self.cells = 0
        self.stdout = CaptureWriter(capture, "stdout", 1)
        self.stderr = CaptureWriter(capture, "stderr", 2)
        self.host = HostStub(proto_in, proto_out, MAIN_PID)

    def configure(self, message: dict[str, Any]) -> dict[str, Any]:
        self.limits = message["limits"]
        apply_limits(self.limits)
        if message.get("policy") == "restricted":
            from sandbox.worker import restricted

            self.compiler = restricted.restricted_compile
            self.namespace = restricted.restricted_namespace()
        self.namespace["__sandbox_shell__"] = _shell
        self.namespace["__codeact_call__"] = self.host.call
        self.namespace["__codeact_unset__"] = UNSET
        self.host.max_argument_bytes = int(self.limits.get("host_argument_bytes", self.host.max_argument_bytes))
        return {"op": "configured"}

    def define(self, message: dict[str, Any]) -> dict[str, Any]:
        """Define the server's own functions (host-tool stubs) in the namespace.

        The source is the server's, not the model's: it is compiled as plain Python even
        under the restricted policy, whose compiler refuses the stubs' ``__codeact_call__``.
        """
        try:
            exec(compile(str(message["source"]), "<tools>", "exec", dont_inherit=True), self.namespace)
        except BaseException as exc:  # noqa: BLE001 - reported to the server, which raises
            return {"op": "defined", "error": execute.format_exception(exc)}
        return {"op": "defined", "error": None}

    def run(self, message: dict[str, Any]) -> dict[str, Any]:
        global _in_user_code
        limit = int(self.limits.get("max_output_bytes", 64_000))
        self.capture.reset(limit, int(message.get("hard_cap", 20 * limit)))
        self.cells += 1
        sys.stdout, sys.stderr = self.stdout, self.stderr
        self.host.begin_cell()
        error: str | None = None
        output_limit = cpu_limit = False
        started = time.perf_counter()
        try:
            _arm_cpu(float(self.limits.get("cpu_seconds", 30)))
            body, tail = execute.compile_cell(message["code"], f"<cell-{self.cells}>", self.compiler)
            _in_user_code = True
            exec(body, self.namespace)
            if tail is not None:
                value = eval(tail, self.namespace)
                _in_user_code = False
                execute.display(value, self.namespace)
        except OutputLimitExceeded as exc:
            output_limit = True
            error = f"OutputLimitExceeded: {exc}\n"
        except CPUTimeExceeded as exc:
            cpu_limit = True
            error = f"CPUTimeExceeded: {exc}\n"
        except BaseException as exc:  # noqa: BLE001 - everything the cell raised is reported
            if isinstance(exc, SystemExit) and os.getpid() != MAIN_PID:
                os._exit(exc.code if isinstance(exc.code, int) else 1)
            error = execute.format_exception(exc)
        finally:
            _in_user_code = False
            if os.getpid() != MAIN_PID:  # a fork of the worker made by user code
                os._exit(0)
            duration = time.perf_counter() - started
            sys.stdout, sys.stderr = self.stdout, self.stderr
        self.host.end_cell()  # a call still in flight on another thread is answered first
        self.capture.drain_now()
        with self.capture.lock:
            stdout, stderr = self.capture.stdout, self.capture.stderr
            return {
                "op": "result",
                "id": message.get("id"),
                "stdout": stdout.render(),
                "stderr": stderr.render(),
                "error": None if error is None else protocol.head_and_tail(error, limit),
                "truncated": stdout.truncated or stderr.truncated,
                "output_limit": output_limit,
                "cpu_limit": cpu_limit,
                "duration": duration,
            }

    def serve(self) -> None:
        while True:
            try:
                message = protocol.read_frame(self.proto_in)
            except KeyboardInterrupt:
                continue
            except protocol.ProtocolError:
                os._exit(0)  # the server went away
            op = message.get("op")
            if op == "run":
                reply = self.run(message)
            elif op == "configure":
                reply = self.configure(message)
            elif op == "define":
                reply = self.define(message)
            elif op == "preimport":
                reply = preimport(message.get("modules") or [])
            elif op == "ping":
                reply = {"op": "pong"}
            elif op == "exit":
                os._exit(0)
            elif op == "call_result":
                continue  # the answer to a call that an interrupt abandoned: nobody waits for it
            else:
                reply = {"op": "error", "error": f"unknown op {op!r}"}
            protocol.write_frame(self.proto_out, reply)


def preimport(modules: list[str]) -> dict[str, Any]:
    """Import modules before a session exists; what failed is reported, not fatal."""
    failed: dict[str, str] = {}
    for name in modules:
        try:
            importlib.import_module(str(name))
        except Exception as exc:  # noqa: BLE001 - a missing package only costs the head start
            failed[str(name)] = f"{type(exc).__name__}: {exc}"
    return {"op": "preimported", "failed": failed}


def _shell(command: str) -> None:
    """Stands in for `!command` lines (see execute.rewrite_bang_lines)."""
    sys.stdout.write(execute.shell_notice(command))


def _after_fork_in_child() -> None:
    CaptureWriter.passthrough = True


def main() -> None:
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    proto_in, proto_out = os.dup(0), os.dup(1)  # os.dup makes them non-inheritable
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.close(out_w)
    os.close(err_w)
    drop_privileges(config)
    reaper = start_reaper(config.get("lifeline_fd"))
    confine(config.get("landlock"))
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes fail with EFBIG instead
    os.register_at_fork(after_in_child=_after_fork_in_child)
    capture = Capture(out_r, err_r)
    worker = Worker(proto_in, proto_out, capture)
    sys.stdout, sys.stderr = worker.stdout, worker.stderr
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the worker
    protocol.write_frame(proto_out, {"op": "ready", "pid": os.getpid(), "uid": os.getuid(), "reaper": reaper})
    worker.serve()


if __name__ == "__main__":
    _startup_err = os.dup(2)
    try:
        main()
    except BaseException:  # noqa: BLE001 - start-up failures go to the server's stderr pipe
        import traceback

        os.write(_startup_err, traceback.format_exc().encode())
        os._exit(70)
