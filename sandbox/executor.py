"""The executor seam: what the agent needs from whatever runs its code.

Why a Protocol of its own: the agent loop and the session store depend on these four
members only, so they can be driven by ``sandbox.Sandbox`` in production and by
``sandbox.fake_executor.ScriptedExecutor`` in unit tests that start no process. Both return
an ``ExecResult``, so the observation the model reads is built the same way either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from sandbox.result import ExecResult


class CodeExecutor(Protocol):
    """Runs one cell of code with persistent state; what the agent loop calls."""

    def run(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run ``code`` to completion (or its limits) and report what it produced."""
        ...

    def interrupt(self) -> None:
        """Stop the running cell (called from another thread when a request is cancelled)."""
        ...


class SessionExecutor(CodeExecutor, Protocol):
    """A ``CodeExecutor`` that a session owns: it has a workspace and is closed with the session."""

    @property
    def workspace(self) -> Path: ...

    def close(self) -> None: ...
