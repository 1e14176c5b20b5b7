"""The client's own function tools as sandbox functions: a call becomes an OpenAI ``tool_calls``.

A ``/v1/agent`` request may carry OpenAI-style ``tools``. Each becomes a Python function in
the session's sandbox. When code calls one, the call cannot be answered here: the client runs
its tools. So the bridge parks the call (the sandbox thread blocks on a future, the
execution's wall clock paused), announces it to the run, and the route answers with a
standard assistant message holding ``tool_calls`` (finish_reason ``tool_calls``). The client
runs the tool as it always does and sends the conversation back with ``tool`` messages; the
``tool_call_id`` alone finds the parked call (no extra field, so an unmodified tool loop
works), its content resolves the future (JSON-decoded when it is JSON) and the code goes on.
A client that never comes back leaves a session that the TTL closes, which cancels the call.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any

from sandbox.host_calls import NO_LIMIT, HostCallError
from server.tools.signature import python_name
from server.tools.toolbox import HostTool


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

    def host_tool(self, name: str, description: str | None, parameters: dict[str, Any] | None) -> HostTool:
        """The sandbox function for the client tool `name` (its Python name made an identifier)."""

        def call(arguments: dict[str, Any], timeout: float | None) -> Any:
            return self._call(name, arguments)

        return HostTool(python_name(name), description or "", parameters or {}, call, origin="client", timeout=NO_LIMIT)

    def _call(self, name: str, arguments: dict[str, Any]) -> Any:
        """On a sandbox thread: announce the call and wait for the client's answer."""
        call = PendingCall(f"call_{uuid.uuid4().hex[:24]}", name, arguments)
        with self._lock:
            self.pending[call.id] = call
        self._loop.call_soon_threadsafe(self.announced.put_nowait, call)
        try:
            return call.future.result()
        except CancelledError as exc:
            raise HostCallError(f"{name} was not answered: the session was closed") from exc
        finally:
            with self._lock:
                self.pending.pop(call.id, None)

    def waits_for(self, call_id: str) -> bool:
        with self._lock:
            return call_id in self.pending

    def resolve(self, call_id: str, content: str) -> None:
        """Answer a parked call with the client's ``tool`` message content."""
        with self._lock:
            call = self.pending.get(call_id)
        if call is not None and not call.future.done():
            call.future.set_result(decode_content(content))

    def cancel(self) -> None:
        """Fail every parked call (the run was cancelled or the session closed)."""
        with self._lock:
            calls = list(self.pending.values())
        for call in calls:
            call.future.cancel()
