"""Host calls, server side: checking a worker's ``call`` frame and following the call it starts.

Agent code may call tools that live outside the sandbox (MCP servers, the HTTP client's own
functions). In the worker a stub (``sandbox/worker/host_stub.py``) sends a ``call`` frame up
the protocol pipe; the run's watch (``sandbox/bridge/watch.py``) hands it to `check`, which
decides here, and nowhere else, what reaches a tool. Nothing is trusted to the stub: the
code runs in the same process and can write any frame it likes.

- the tool must be one the session's `HostCallHandler` knows; anything else is an error for
  the code, not a call;
- arguments must be a JSON object no larger than ``Limits.host_argument_bytes`` whose text
  is valid Unicode (a lone surrogate broke an MCP server's wire for every session);
- the result must be JSON data no larger than ``Limits.host_result_bytes``;
- each call is bounded by its tool's timeout (``Limits.host_call_seconds`` unless the handler
  says otherwise), and all of a run's calls together by ``Limits.host_wait_seconds``, the
  operator's deadline: a client's own tool waits for the client, but never longer than that.

A handler (``sandbox/host_calls.py``, the seam) starts a call and returns its `Future`; the
watch waits on it without a thread. Every call leaves a `HostCallRecord`; a run keeps at most ``MAX_RECORDS`` of them,
with arguments up to ``RECORDED_ARGUMENT_BYTES``, and counts the rest.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any

from sandbox.host_calls import HostCallDenied, HostCallError, HostCallHandler, HostCallRecord, start_call
from sandbox.limits import Limits
from sandbox.protocol import encodable

#: Calls a run records in full; later ones are only counted.
MAX_RECORDS = 64
#: Arguments larger than this (as JSON) are recorded as their size.
RECORDED_ARGUMENT_BYTES = 4096
#: A handler is given its call's timeout plus this: the bridge's own deadline ends the call
#: (and cancels it), the handler's is the backstop, so one message says why, from one clock.
HANDLER_BACKSTOP_S = 1.0


@dataclass
class CallLog:
    """A run's call records, bounded (see the module docstring)."""

    records: list[HostCallRecord] = field(default_factory=list)
    omitted: int = 0
    waited_s: float = 0.0

    def add(self, record: HostCallRecord) -> None:
        self.waited_s += record.duration_s
        if len(self.records) < MAX_RECORDS:
            self.records.append(record)
        else:
            self.omitted += 1


@dataclass
class Answer:
    """What became of a call: the frame for the worker and the record for the result."""

    reply: dict[str, Any]
    record: HostCallRecord


def json_size(value: Any) -> int:
    """Bytes of `value` as strict JSON in UTF-8; ValueError/TypeError if it is not JSON data,
    UnicodeEncodeError if a string holds a lone surrogate."""
    return len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))


class HostCall:
    """One call in flight: its future and its deadline."""

    def __init__(self, call_id: int, tool: str, recorded: Any, future: Future[Any], timeout: float) -> None:
        self.id, self.tool, self.future = call_id, tool, future
        self.recorded = recorded  # the arguments as the record keeps them
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = self.started + timeout

    def answer(self, error: str | None, value: Any = None) -> Answer:
        return _answer(self.id, self.tool, self.recorded, self.started, error, value)

    def outcome(self, limits: Limits) -> Answer:
        """The answer of a call whose future is done."""
        try:
            value = self.future.result(timeout=0)
        except CancelledError:
            return self.answer(f"{self.tool} was not answered: the call was cancelled")
        except HostCallDenied as exc:  # the code sees PermissionError
            answer = self.answer(str(exc) or f"{self.tool} was not allowed")
            answer.reply["denied"] = True
            return answer
        except HostCallError as exc:
            return self.answer(str(exc) or f"{self.tool} failed")
        except Exception as exc:  # noqa: BLE001 - a tool's failure is the code's to handle
            return self.answer(f"{self.tool} failed: {type(exc).__name__}: {exc}")
        try:
            size = json_size(value)
        except (TypeError, ValueError):
            return self.answer(f"{self.tool} returned a value that is not JSON data ({type(value).__name__})")
        if size > limits.host_result_bytes:
            return self.answer(f"the result of {self.tool} is {size} bytes; the limit is {limits.host_result_bytes}")
        return self.answer(None, value)

    def give_up(self, why: str) -> Answer:
        """Stop waiting: cancel the call (which stops it) and answer with `why`."""
        self.future.cancel()
        return self.answer(f"{self.tool} was not answered: {why}")

    def timed_out(self) -> Answer:
        self.future.cancel()
        return self.answer(f"{self.tool} did not answer within {self.timeout:g} s")


def _answer(call_id: Any, tool: str, recorded: Any, started: float, error: str | None, value: Any = None) -> Answer:
    reply: dict[str, Any] = {"op": "call_result", "id": call_id, "ok": error is None}
    if error is None:
        reply["value"] = value
    else:
        reply["error"] = error = encodable(error)  # a tool's message may hold anything
    record = HostCallRecord(tool, recorded, time.monotonic() - started, error)
    return Answer(reply, record)


def check(frame: dict[str, Any], handler: HostCallHandler | None, limits: Limits, waited_s: float) -> Answer | HostCall:
    """A ``call`` frame refused (its `Answer`), or started (the `HostCall` in flight).

    `waited_s`: how long this run's calls have waited so far (the budget's spent part).
    """
    started = time.monotonic()
    call_id = frame.get("id")
    tool = frame.get("tool")
    arguments = frame.get("arguments")
    name = tool if isinstance(tool, str) else repr(tool)[:100]

    def refuse(error: str, recorded: Any = None) -> Answer:
        return _answer(call_id, name, recorded, started, error)

    if not isinstance(call_id, int) or isinstance(call_id, bool):
        return refuse("a call frame needs an integer id")
    if not isinstance(tool, str) or handler is None or not handler.knows(tool):
        return refuse(f"no tool named {name} is available in this session")
    if not isinstance(arguments, dict):
        return refuse(f"the arguments of {tool} must be a JSON object")
    try:
        size = json_size(arguments)
    except (TypeError, ValueError):  # decoded frames hold JSON data: only odd text gets here
        return refuse(f"the arguments of {tool} hold text that is not valid Unicode")
    if size > limits.host_argument_bytes:
        return refuse(
            f"the arguments of {tool} are {size} bytes; the limit is {limits.host_argument_bytes}",
            f"<{size} bytes, not kept>",
        )
    recorded = arguments if size <= RECORDED_ARGUMENT_BYTES else f"<{size} bytes, not kept>"
    budget = limits.host_wait_seconds - waited_s
    if budget <= 0:
        return refuse(
            f"{tool} was not called: this execution's tool calls already waited {waited_s:.0f} s, "
            f"the limit is {limits.host_wait_seconds:g} s",
            recorded,
        )
    timeout = handler.timeout_for(tool)
    timeout = min(limits.host_call_seconds if timeout is None else timeout, budget)
    try:
        future = start_call(handler, tool, arguments, timeout + HANDLER_BACKSTOP_S)
    except HostCallError as exc:
        return refuse(str(exc) or f"{tool} failed", recorded)
    return HostCall(call_id, tool, recorded, future, timeout)
