"""A scripted executor: the executor seam without a process, for deterministic loop tests.

Why: the agent loop's decisions (repeats, forced answers, code given as an answer, limits
reported to the model) depend only on the ``ExecResult`` of each cell. Scripting those
results lets a unit test drive ``run_agent`` through every branch in milliseconds, while
the real sandbox keeps its own tests that really start workers and try to break out.
"""

from __future__ import annotations

import collections
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from sandbox.result import ExecResult

Outcome = ExecResult | str | Callable[[str], ExecResult]


class ScriptedExecutor:
    """Answers each ``run`` with the next scripted outcome.

    An outcome is an ``ExecResult``, a string (what the cell printed), or a function of the
    code. With the script used up, ``default`` (a function of the code) answers; without
    one, running more cells than scripted is a test bug and raises.
    """

    def __init__(self, outcomes: Iterable[Outcome] = (), default: Callable[[str], ExecResult] | None = None) -> None:
        self._outcomes = collections.deque(outcomes)
        self._default = default
        self._workspace: tempfile.TemporaryDirectory[str] | None = None  # made when first asked for
        self.ran: list[str] = []  # every cell, in order
        self.interrupted = threading.Event()
        self.closed = False

    def run(self, code: str, timeout: float | None = None) -> ExecResult:
        if self.closed:
            raise RuntimeError("run on a closed ScriptedExecutor")
        self.ran.append(code)
        if self._outcomes:
            outcome = self._outcomes.popleft()
        elif self._default is not None:
            outcome = self._default
        else:
            raise AssertionError(f"unscripted cell #{len(self.ran)}: {code!r}")
        if isinstance(outcome, ExecResult):
            return outcome
        if isinstance(outcome, str):
            return ExecResult(stdout=outcome)
        return outcome(code)

    def interrupt(self) -> None:
        self.interrupted.set()

    @property
    def workspace(self) -> Path:
        if self._workspace is None:
            self._workspace = tempfile.TemporaryDirectory(prefix="codeact-fake-ws-")
        return Path(self._workspace.name)

    def close(self) -> None:
        self.closed = True
        if self._workspace is not None:
            self._workspace.cleanup()
            self._workspace = None
