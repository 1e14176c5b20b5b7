"""The client's own function tools as sandbox functions: a call becomes an OpenAI ``tool_calls``.

A ``/v1/agent`` request may carry OpenAI-style ``tools``. Each becomes a Python function in
the session's sandbox. When code calls one, the call cannot be answered here: the client runs
its tools. So the bridge parks the call (the sandbox thread blocks on a future, the
execution's wall clock paused), announces it to the run, and the route answers with a
standard assistant message holding ``tool_calls`` (finish_reason ``tool_calls``). The client
runs the tool as it always does and sends the conversation back with ``tool`` messages; the
``tool_call_id`` alone finds the parked call (no extra field, so an unmodified tool loop
works), its content resolves the future (JSON-decoded when it is JSON) and the code goes on.
A client that never comes back gets no more than the operator's wait budget
(``--tool-wait-limit``): the call then fails in the code with a ToolCallError, and the
client's late answer still resumes the run from there (the answer itself is dropped). A
session that idles past its TTL is closed, which cancels the call. A call made while no run can
announce it (a Python tool's ``source`` calling a client tool while it is being defined)
fails at once: nobody would ever answer it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from sandbox.host_calls import NO_LIMIT, HostCallError
from server.tools.signature import python_name
from server.tools.toolbox import HostTool

#: Unanswered calls whose late answer still resumes their run.
ENDED_REMEMBERED = 256


@dataclass(frozen=True)
class ClientFunction:
    """A function tool the client declared (OpenAI's ``function`` object): the model's code may
    call it, the client runs it. The API turns the request's declaration into this."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


@dataclass
class PendingCall:
    """A call of a client tool waiting for the client's ``tool`` message."""

    id: str
    name: str  # the client's own name for the tool
    arguments: dict[str, Any]
    future: Future[Any] = field(default_factory=Future, repr=False)

    def as_openai(self, index: int) -> dict[str, Any]:
        """The call as ``message.tool_calls[index]`` (streaming adds ``index``)."""
        return {
            "index": index,
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)},
        }


@dataclass
class ToolCallsPending:
    """Run event: the code waits for these client tool calls (the run is suspended)."""

    calls: list[PendingCall]


def _answered(future: Future[Any]) -> bool:
    return not future.cancelled() and future.exception() is None


def decode_content(content: str) -> Any:
    """A tool message's content as the code receives it: JSON data when it is JSON, else the text."""
    try:
        return json.loads(content)
    except ValueError:
        return content


class ClientToolBridge:
    """Parks a session's client tool calls until the client answers them (one per session)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self.pending: dict[str, PendingCall] = {}
        #: Calls not yet announced to a request; read on the event loop.
        self.announced: asyncio.Queue[PendingCall] = asyncio.Queue()
        #: Why calls fail at once right now (no run could announce them), else None.
        self.refusing: str | None = None
        #: Calls that ended unanswered (the wait budget ran out, or the run stopped waiting),
        #: newest last: the client's late answer still finds, and resumes, the suspended run.
        self._ended: OrderedDict[str, None] = OrderedDict()

    def host_tool(self, name: str, description: str | None, parameters: dict[str, Any] | None) -> HostTool:
        """The sandbox function for the client tool `name` (its Python name made an identifier)."""

        def start(arguments: dict[str, Any], timeout: float) -> Future[Any]:
            return self._start(name, arguments)

        function = python_name(name)
        return HostTool(function, description or "", parameters or {}, start, origin="client", timeout=NO_LIMIT)

    def _start(self, name: str, arguments: dict[str, Any]) -> Future[Any]:
        """Announce the call to the run (on the event loop); its future waits for the client."""
        call = PendingCall(f"call_{uuid.uuid4().hex[:24]}", name, arguments)
        if self.refusing is not None:
            call.future.set_exception(HostCallError(f"{name} cannot be called {self.refusing}"))
            return call.future
        with self._lock:
            self.pending[call.id] = call
        call.future.add_done_callback(lambda done: self._forget(call.id, answered=_answered(done)))
        try:
            self._loop.call_soon_threadsafe(self.announced.put_nowait, call)
        except RuntimeError:  # the event loop is closed: the server is stopping
            call.future.set_exception(HostCallError(f"{name} was not answered: the server is stopping"))
        return call.future

    def _forget(self, call_id: str, *, answered: bool) -> None:
        with self._lock:
            self.pending.pop(call_id, None)
            if not answered:
                self._ended[call_id] = None
                while len(self._ended) > ENDED_REMEMBERED:
                    self._ended.popitem(last=False)

    def waits_for(self, call_id: str) -> bool:
        """Whether a run of this session waits for `call_id`'s answer, or waited until the call
        ended unanswered (then the answer is dropped and the run goes on from where it is)."""
        with self._lock:
            return call_id in self.pending or call_id in self._ended

    def resolve(self, call_id: str, content: str) -> None:
        """Answer a parked call with the client's ``tool`` message content."""
        with self._lock:
            call = self.pending.get(call_id)
            self._ended.pop(call_id, None)
        if call is not None:
            with contextlib.suppress(InvalidStateError):  # cancelled or timed out meanwhile
                call.future.set_result(decode_content(content))

    def cancel(self) -> None:
        """Fail every parked call (the run was cancelled or the session closed)."""
        with self._lock:
            calls = list(self.pending.values())
        for call in calls:
            call.future.cancel()
