"""The executor seam: what the agent needs from whatever runs its code.

Why a Protocol of its own: the agent loop and the session store depend on these four
members only, so they can be driven by ``sandbox.Sandbox`` in production and by
``sandbox.fake_executor.ScriptedExecutor`` in unit tests that start no process. Both return
an ``ExecResult``, so the observation the model reads is built the same way either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from sandbox.host_calls import start_on_own_thread
from sandbox.result import ExecResult

T = TypeVar("T")


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


async def on_own_thread(work: Callable[..., T], *args: object, name: str = "sandbox-work") -> T:
    """Await a blocking sandbox call (`run`, `define`, `close`, starting a worker) run on a
    thread of its own (``host_calls.start_on_own_thread``).

    Why not ``asyncio.to_thread``: the event loop's default executor is one fixed pool shared
    by every session, so a few sessions whose executions wait (on a slow tool, on a client that
    does not answer its tool call) took all its threads and no other session could run
    ``print(6 * 7)``. A thread per call shares nothing: a session holds one thread while its
    execution runs (one at a time, under its lock), and the sandbox bounds how long that is.
    If the awaiting task is cancelled the thread finishes on its own; the caller stops the
    work itself (``interrupt``, ``kill``).
    """
    # Shielded: cancelling the await must not cancel the work before its thread starts it.
    return await asyncio.shield(asyncio.wrap_future(start_on_own_thread(lambda: work(*args), name)))
