"""`SandboxPool`: pre-started workers, so a new session's first result comes fast.

Why: starting Python (and bubblewrap) costs tens of milliseconds; a session should not
pay it. Each pooled worker already has its own fresh session directory and uid, and
applies the session's limits and policy in the first (cheap) message after `acquire`,
so one pool serves any limits. The network setting is fixed when a worker starts, so a
request for the other setting starts a worker on the spot.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path

from sandbox import isolation, workspace
from sandbox.errors import SandboxClosedError, SandboxError
from sandbox.limits import Limits
from sandbox.process import WorkerProcess
from sandbox.sandbox import Policy, Sandbox

log = logging.getLogger(__name__)

_Slot = tuple[workspace.SessionDirs, "int | None", WorkerProcess, str]


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
    ) -> None:
        self.size = size
        self.network = network
        self.limits = limits or Limits()
        self.isolation: str = isolation.detect(isolation_level)
        self._workspace_root = workspace_root
        self._idle: deque[_Slot] = deque()
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)
        self._closed = False
        self._refiller = threading.Thread(target=self._refill_forever, name="sandbox-pool", daemon=True)
        self._refiller.start()

    def _new_slot(self, network: bool) -> _Slot:
        uid = isolation.UIDS.acquire() if isolation.wants_uid(self.isolation) else None  # type: ignore[arg-type]
        dirs = workspace.SessionDirs.create(self._workspace_root, uid)
        try:
            plan = isolation.plan(self.isolation, dirs.workspace, dirs.tmp, network, uid)  # type: ignore[arg-type]
            return dirs, uid, WorkerProcess(plan), self.isolation
        except BaseException:
            dirs.remove()
            isolation.UIDS.release(uid)
            raise

    def _refill_forever(self) -> None:
        while True:
            with self._lock:
                while not self._closed and len(self._idle) >= self.size:
                    self._wanted.wait()
                if self._closed:
                    return
            try:
                slot = self._new_slot(self.network)
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

    def acquire(self, limits: Limits | None = None, network: bool | None = None,
                policy: Policy = "default") -> Sandbox:
        """A new session: a pre-started worker when one is idle, else one started now."""
        network = self.network if network is None else network
        with self._lock:
            if self._closed:
                raise SandboxClosedError("the pool is closed")
            slot = self._idle.popleft() if self._idle and network == self.network else None
            self._wanted.notify()
        if slot is None:
            slot = self._new_slot(network)
        return Sandbox(limits or self.limits, network, policy, _prestarted=slot)

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
