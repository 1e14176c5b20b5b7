"""Host calls, server side: answering the ``call`` frames a worker sends while code runs.

Agent code may call tools that live outside the sandbox (MCP servers, the HTTP client's own
functions). In the worker a stub (``sandbox/worker/host_stub.py``) sends a ``call`` frame up
the protocol pipe; `Sandbox` hands the frame to `answer`, which checks it, runs the call
through the session's `HostCallHandler` on a thread of its own, and returns the
``call_result`` frame to send back. Why every check is here and none is trusted to the stub:
the code runs in the same process as the stub and can write any frame it likes, so this is
where "the sandbox reaches nothing but its calls" is decided:

- the tool must be one the handler knows; anything else is an error for the code, not a call;
- arguments must be a JSON object no larger than ``Limits.host_argument_bytes``;
- the result must be JSON data no larger than ``Limits.host_result_bytes``;
- each call is bounded by its tool's timeout (``Limits.host_call_seconds`` unless the handler
  says otherwise; a client's own tool waits for the client, up to the session's TTL).

While a call waits the execution's wall-clock limit pauses (the caller moves its deadline);
memory and CPU limits are the worker's and stay. Every call becomes a `HostCallRecord` in the
run's `ExecResult` (tool, arguments, duration, error), whatever its outcome.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from sandbox.limits import Limits

#: How often a waiting call checks whether the run was cancelled or interrupted.
WAIT_TICK_S = 0.1

_CALLS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="host-call")


class HostCallError(Exception):
    """Raised by a handler to fail a call; the code sees a ToolCallError with this message."""


class HostCallHandler(Protocol):
    """The narrow seam between a sandbox and the tools outside it (one per session)."""

    def knows(self, tool: str) -> bool:
        """Whether `tool` may be called from this session."""

    def timeout_for(self, tool: str) -> float | None:
        """Seconds a call of `tool` may take; None: the limit's default."""

    def call(self, tool: str, arguments: dict[str, Any], timeout: float | None) -> Any:
        """Run the call (blocking, on a thread of its own); JSON data, or HostCallError."""

    def cancel(self) -> None:
        """Unblock calls in flight: the run was cancelled or the sandbox is closing."""


NO_LIMIT = float("inf")


@dataclass
class HostCallRecord:
    """One call as the step's observation records it."""

    tool: str
    arguments: Any
    duration_s: float
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Answer:
    """What `answer` decided: the frame for the worker and the record for the result."""

    reply: dict[str, Any]
    record: HostCallRecord
    waited_s: float


class FunctionHostCalls:
    """A handler over plain Python functions: the fake beside the real ones, and what tests
    and embedders use to give code a few tools without MCP or HTTP."""

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
        return self.functions[tool](**arguments)

    def cancel(self) -> None:
        self.cancelled.set()


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass"))


def answer(
    frame: dict[str, Any],
    handler: HostCallHandler | None,
    limits: Limits,
    stop: Callable[[], str | None],
) -> Answer:
    """Check and run one ``call`` frame; `stop()` returns why to give up waiting, or None."""
    started = time.monotonic()
    call_id = frame.get("id")
    tool = frame.get("tool")
    arguments = frame.get("arguments")
    name = tool if isinstance(tool, str) else repr(tool)[:100]

    def done(error: str | None, value: Any = None, *, recorded: Any = arguments) -> Answer:
        reply: dict[str, Any] = {"op": "call_result", "id": call_id, "ok": error is None}
        if error is None:
            reply["value"] = value
        else:
            reply["error"] = error
        waited = time.monotonic() - started
        return Answer(reply, HostCallRecord(name, recorded, waited, error), waited)

    if not isinstance(call_id, int) or isinstance(call_id, bool):
        return done("a call frame needs an integer id", recorded=None)
    if not isinstance(tool, str) or handler is None or not handler.knows(tool):
        return done(f"no tool named {name} is available in this session", recorded=None)
    if not isinstance(arguments, dict):
        return done(f"the arguments of {tool} must be a JSON object", recorded=None)
    size = _json_size(arguments)
    if size > limits.host_argument_bytes:
        return done(
            f"the arguments of {tool} are {size} bytes; the limit is {limits.host_argument_bytes}",
            recorded=f"<{size} bytes, not kept>",
        )
    timeout = handler.timeout_for(tool)
    if timeout is None:
        timeout = limits.host_call_seconds
    future: Future[Any] = _CALLS.submit(handler.call, tool, arguments, None if timeout == NO_LIMIT else timeout)
    deadline = started + timeout
    while True:
        why = stop()
        if why is not None:
            future.cancel()
            handler.cancel()
            return done(f"{tool} was not answered: {why}")
        try:
            value = future.result(timeout=min(WAIT_TICK_S, max(deadline - time.monotonic(), 0.0)))
            break
        except FutureTimeout:
            if time.monotonic() >= deadline:
                future.cancel()
                return done(f"{tool} did not answer within {timeout:g} s")
        except HostCallError as exc:
            return done(str(exc) or f"{tool} failed")
        except Exception as exc:  # noqa: BLE001 - a tool's failure is the code's to handle
            return done(f"{tool} failed: {type(exc).__name__}: {exc}")
    try:
        size = _json_size(value)
    except (TypeError, ValueError):
        return done(f"{tool} returned a value that is not JSON data ({type(value).__name__})")
    if size > limits.host_result_bytes:
        return done(f"the result of {tool} is {size} bytes; the limit is {limits.host_result_bytes}")
    return done(None, value)
