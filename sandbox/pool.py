"""`SandboxPool`: pre-started workers, so a new session's first result comes fast.

Why: starting Python (and bubblewrap) costs tens of milliseconds; a session should not
pay it. Each pooled worker already has its own fresh session directory and uid, and
applies the session's limits and policy in the first (cheap) message after `acquire`,
so one pool serves any limits. The network setting is fixed when a worker starts, so a
request for the other setting starts a worker on the spot.

Why `preimport`: a session's first `import matplotlib.pyplot` cost 1.3 s here (pandas and
numpy most of the rest of a first plot). A pooled worker imports those modules while it
waits, so the session gets them from `sys.modules` (benchmarks/sandbox_latency.py). A worker
started on the spot skips it: it would make that session wait for imports it may not use.

Why `python`: workers run in the sandbox environment's interpreter (see
`sandbox/environment.py`), not the server's; None keeps the server's interpreter.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from sandbox import workspace
from sandbox.bridge.channel import WorkerDied
from sandbox.confine import isolation
from sandbox.errors import SandboxClosedError, SandboxError, SandboxStartError
from sandbox.limits import Limits
from sandbox.process import WorkerProcess
from sandbox.sandbox import Policy, Sandbox

log = logging.getLogger(__name__)

#: Seconds a pooled worker may spend on its pre-imports (a cold disk cache is slow).
PREIMPORT_TIMEOUT_S = 120.0
#: numpy + pandas + pyplot take ~280 MiB of the address space RLIMIT_AS counts; below this
#: limit pre-importing would leave the session's own code too little, so it is skipped.
PREIMPORT_MIN_MEMORY_MB = 768

_Slot = tuple[workspace.SessionDirs, "int | None", WorkerProcess, isolation.Level]


class SandboxPool:
    """Keeps `size` idle workers ready; `acquire` hands one out and refills in the background."""

    def __init__(
        self,
        size: int = 2,
        network: bool = False,
        *,
        limits: Limits | None = None,
        isolation_level: isolation.Requested = "auto",
        workspace_root: Path | None = None,
        python: str | None = None,
        preimport: Sequence[str] = (),
        keep_processes: bool = False,
    ) -> None:
        self.size = size
        self.network = network
        self.limits = limits or Limits()
        self.python = python
        self.keep_processes = keep_processes
        self.preimport = list(preimport)
        if self.preimport and self.limits.memory_mb < PREIMPORT_MIN_MEMORY_MB:
            log.info(
                "sandbox pre-import off: a %d MiB memory limit leaves no room for %s",
                self.limits.memory_mb,
                ", ".join(self.preimport),
            )
            self.preimport = []
        self._reported_failures = False
        self.isolation: isolation.Level = isolation.detect(isolation_level, python)
        self._workspace_root = workspace_root
        self._idle: deque[_Slot] = deque()
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)
        self._closed = False
        self._refiller = threading.Thread(target=self._refill_forever, name="sandbox-pool", daemon=True)
        self._refiller.start()

    def _new_slot(self, network: bool, preimport: bool = False) -> _Slot:
        wants_uid = isolation.wants_uid(self.isolation, self.python)  # type: ignore[arg-type]
        uid = isolation.UIDS.acquire() if wants_uid else None
        dirs = workspace.SessionDirs.create(self._workspace_root, uid)
        proc: WorkerProcess | None = None
        try:
            plan = isolation.plan(
                self.isolation,
                dirs.workspace,
                dirs.tmp,
                network,
                uid,
                python=self.python,
            )
            proc = WorkerProcess(plan)
            if preimport and self.preimport:
                self._preimport(proc)
            return dirs, uid, proc, self.isolation
        except BaseException:
            if proc is not None:
                proc.kill()
            dirs.remove()
            isolation.UIDS.release(uid)
            raise

    def _preimport(self, proc: WorkerProcess) -> None:
        """Import the configured modules in an idle worker; failures are logged once per pool."""
        try:
            reply = proc.request({"op": "preimport", "modules": self.preimport}, timeout=PREIMPORT_TIMEOUT_S)
        except (WorkerDied, TimeoutError) as exc:
            raise SandboxStartError(f"sandbox worker died while pre-importing {self.preimport}: {exc}") from exc
        failed = reply.get("failed") or {}
        if failed and not self._reported_failures:
            self._reported_failures = True
            log.warning(
                "sandbox pre-import failed (sessions import these themselves): %s",
                "; ".join(f"{name}: {why}" for name, why in failed.items()),
            )

    def _refill_forever(self) -> None:
        while True:
            with self._lock:
                while not self._closed and len(self._idle) >= self.size:
                    self._wanted.wait()
                if self._closed:
                    return
            try:
                slot = self._new_slot(self.network, preimport=True)
            except SandboxError:
                log.exception("sandbox pool could not pre-start a worker; retrying")
                with self._lock:
                    self._wanted.wait(timeout=1.0)
                continue
            with self._lock:
                if self._closed:
                    _discard(slot)
                    return
                self._idle.append(slot)

    def acquire(self, limits: Limits | None = None, network: bool | None = None, policy: Policy = "default") -> Sandbox:
        """A new session: a pre-started worker when one is idle, else one started now."""
        network = self.network if network is None else network
        with self._lock:
            if self._closed:
                raise SandboxClosedError("the pool is closed")
            slot = self._idle.popleft() if self._idle and network == self.network else None
            self._wanted.notify()
        if slot is None:
            slot = self._new_slot(network)
        return Sandbox(
            limits or self.limits,
            network,
            policy,
            python=self.python,
            keep_processes=self.keep_processes,
            _prestarted=slot,
        )

    @property
    def idle(self) -> int:
        """Workers ready right now."""
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        """Stop the refill thread and the idle workers (acquired sandboxes are the caller's)."""
        with self._lock:
            self._closed = True
            slots = list(self._idle)
            self._idle.clear()
            self._wanted.notify_all()
        for slot in slots:
            _discard(slot)
        self._refiller.join(timeout=35)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _discard(slot: _Slot) -> None:
    dirs, uid, proc, _ = slot
    proc.close()
    dirs.remove()
    isolation.UIDS.release(uid)
