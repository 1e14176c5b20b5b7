"""`IdleWatch`: the limits of a worker's tree between runs, checked by one thread for all.

Why: the run's watch (``watch.py``) ends with the run, but what the code left behind does
not. A thread the cell started, a process it kept (``keep_processes``), or a cell that forged
its run's result with the token it read from the worker's memory and went on: each runs
while no run is in flight. The worker's rlimits bound each process alone; the tree's memory,
its process count and its CPU are the server's to watch, so the limits hold between runs too:
a sandbox that is idle is checked every ``INTERVAL_S`` seconds, and a tree that breaks a
limit is killed. The next run starts a fresh worker and says why.

What counts between runs: the tree's memory and process count, as in a run, and the CPU it
burns after the run ended, at most ``Limits.cpu_seconds`` until the next run starts.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Protocol

log = logging.getLogger(__name__)

#: Seconds between two checks of every idle sandbox.
INTERVAL_S = 1.0


class Watched(Protocol):
    """What the idle watch asks of a sandbox (``Sandbox`` is one)."""

    def check_idle(self) -> None:
        """Check the tree against the limits if no run is in flight; kill it if it broke one."""
        ...


class IdleWatch:
    """One daemon thread checking every registered sandbox while it is idle."""

    def __init__(self, interval: float = INTERVAL_S) -> None:
        self.interval = interval
        self._watched: weakref.WeakSet[Watched] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, sandbox: Watched) -> None:
        """Watch `sandbox` until it is garbage or `discard`ed (it says itself when it is idle)."""
        with self._lock:
            self._watched.add(sandbox)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._forever, name="sandbox-idle-watch", daemon=True)
                self._thread.start()

    def discard(self, sandbox: Watched) -> None:
        with self._lock:
            self._watched.discard(sandbox)

    def _forever(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                watched = list(self._watched)
            for sandbox in watched:
                try:
                    sandbox.check_idle()
                except Exception:  # noqa: BLE001 - one sandbox's failure must not end the watch
                    log.exception("checking an idle sandbox failed")


#: The process's one idle watch.
IDLE_WATCH = IdleWatch()
