"""The host-call seam: what a sandbox needs from the tools that live outside it, and a fake.

Agent code may call tools outside the sandbox (MCP servers, the HTTP client's own functions).
A session gives its sandbox one `HostCallHandler`; the bridge (``sandbox/bridge/``) checks
every call frame the code sends and only then asks the handler to start the call.

Why a handler starts a call and returns a `Future` instead of answering it on a thread:
blocking calls needed a pool of threads, and one pool shared by every session let one
session's parked or abandoned calls take all of it (issue 34). A future needs no thread (an
MCP call is a task on the event loop, a client's call waits for the client's next request),
and cancelling it stops the call. A handler written against the older, blocking shape (only
``call``) still works: `start_call` gives such a call a thread of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

#: A tool whose handler gives this timeout waits as long as the run's wait budget allows.
NO_LIMIT = float("inf")


class HostCallError(Exception):
    """Raised by a handler (or set on its future) to fail a call; the code sees a ToolCallError."""


class HostCallDenied(HostCallError):
    """The call was not allowed to run (a person denied it, or nobody decided in time); the
    code sees a ``PermissionError`` with the message."""


class HostCallHandler(Protocol):
    """The narrow seam between a sandbox and the tools outside it (one per session)."""

    def knows(self, tool: str) -> bool:
        """Whether `tool` may be called from this session."""

    def timeout_for(self, tool: str) -> float | None:
        """Seconds a call of `tool` may take; None: the limit's default; NO_LIMIT: the wait budget."""

    def start(self, tool: str, arguments: dict[str, Any], timeout: float) -> Future[Any]:
        """Start the call without blocking; its future holds JSON data, or fails (HostCallError
        for the tool's own message). Cancelling the future must stop the call."""

    def cancel(self) -> None:
        """Stop calls in flight: the run was cancelled or the sandbox is closing."""


@dataclass
class HostCallRecord:
    """One call as the step's observation records it."""

    tool: str
    arguments: Any
    duration_s: float
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def start_call(handler: Any, tool: str, arguments: dict[str, Any], timeout: float) -> Future[Any]:
    """The handler's `start`; for a handler with only a blocking ``call(tool, arguments,
    timeout)``, that call on a thread of its own (it cannot be stopped, only left)."""
    start = getattr(handler, "start", None)
    if start is not None:
        future: Future[Any] = start(tool, arguments, timeout)
        return future
    return start_on_own_thread(lambda: handler.call(tool, arguments, timeout), f"host-call-{tool}")


def start_on_own_thread(work: Callable[[], T], name: str) -> Future[T]:
    """`work()` on a new daemon thread, its outcome in the returned future.

    Why a thread per call and no pool: a pool shared by sessions is what one session's parked
    or abandoned work exhausted (issue 34). Cancelling the future before the thread starts
    skips the work; after, the work runs to its end and its outcome is dropped.
    """
    future: Future[T] = Future()

    def body() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(work())
        except BaseException as exc:  # noqa: BLE001 - the tool's failure is the code's to see
            future.set_exception(exc)

    threading.Thread(target=body, name=name, daemon=True).start()
    return future


class FunctionHostCalls:
    """A handler over plain Python functions: the fake beside the real ones, and what tests
    and embedders use to give code a few tools without MCP or HTTP. Each call runs on a
    thread of its own (a plain function cannot be cancelled; its thread ends with it)."""

    def __init__(
        self, functions: Mapping[str, Callable[..., Any]], timeouts: Mapping[str, float] | None = None
    ) -> None:
        self.functions = dict(functions)
        self.timeouts = dict(timeouts or {})
        self.cancelled = threading.Event()

    def knows(self, tool: str) -> bool:
        return tool in self.functions

    def timeout_for(self, tool: str) -> float | None:
        return self.timeouts.get(tool)

    def call(self, tool: str, arguments: dict[str, Any], timeout: float | None) -> Any:
        """Run the function (on the call's own thread)."""
        return self.functions[tool](**arguments)

    def start(self, tool: str, arguments: dict[str, Any], timeout: float) -> Future[Any]:
        return start_on_own_thread(lambda: self.call(tool, arguments, timeout), f"host-call-{tool}")

    def cancel(self) -> None:
        self.cancelled.set()
