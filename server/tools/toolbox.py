"""A session's host tools: what the sandbox defines, what the prompt lists, who answers a call.

Why one object per session: the set of tools is the session's (the MCP servers it asked for,
the function tools its client sent), and it is the session sandbox's `HostCallHandler`, so
a call can only reach a tool this session was given. Each `HostTool` carries its own
``start``, which begins a call and returns its future without blocking (an MCP server through
``server.mcp.manager``, the client through ``server.tools.client_calls``); the toolbox only
routes and cancels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sandbox.host_calls import NO_LIMIT
from server.tools.signature import FunctionShape, shape

#: Starts one call with its arguments and timeout; the future holds the result.
ToolStart = Callable[[dict[str, Any], float], "Future[Any]"]


@dataclass(frozen=True)
class ToolSpec:
    """A tool the code may call: defined in the sandbox by ``source``, described by the rest."""

    name: str
    signature: str
    description: str
    source: str


@dataclass(frozen=True)
class HostTool:
    """One function in the sandbox whose body runs outside it."""

    function: str  # the Python name (a valid identifier)
    description: str
    input_schema: dict[str, Any]
    start: ToolStart
    origin: str  # "mcp:<server>" or "client"
    #: Seconds a call may take; None: the sandbox limit's default; NO_LIMIT: as long as the
    #: run's wait budget (``--tool-wait-limit``) allows (a client's tool waits for the client).
    timeout: float | None = None
    shape: FunctionShape = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", shape(self.function, self.description, self.input_schema))


class Toolbox:
    """The `HostCallHandler` of one session's sandbox."""

    def __init__(self, tools: Iterable[HostTool] = ()) -> None:
        self._tools: dict[str, HostTool] = {}
        self._lock = threading.Lock()
        self._on_cancel: list[Callable[[], None]] = []
        for tool in tools:
            self.add(tool)

    def add(self, tool: HostTool) -> None:
        with self._lock:
            if tool.function in self._tools:
                raise ValueError(f"two tools would be the function {tool.function}")
            self._tools[tool.function] = tool

    def on_cancel(self, callback: Callable[[], None]) -> None:
        self._on_cancel.append(callback)

    @property
    def cancel_callbacks(self) -> list[Callable[[], None]]:
        return list(self._on_cancel)

    def __contains__(self, function: str) -> bool:
        return function in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def tools(self) -> list[HostTool]:
        return list(self._tools.values())

    # -- HostCallHandler -------------------------------------------------------------
    def knows(self, tool: str) -> bool:
        return tool in self._tools

    def timeout_for(self, tool: str) -> float | None:
        return self._tools[tool].timeout

    def start(self, tool: str, arguments: dict[str, Any], timeout: float) -> Future[Any]:
        return self._tools[tool].start(arguments, timeout)

    def cancel(self) -> None:
        for callback in self._on_cancel:
            callback()

    # -- what the sandbox and the model get ---------------------------------------------
    @staticmethod
    def prelude(tools: Iterable[HostTool]) -> str:
        """Source defining the stubs of `tools` in the sandbox."""
        return "\n".join(t.shape.stub_source(t.function) for t in tools)

    @staticmethod
    def specs(tools: Iterable[HostTool]) -> list[ToolSpec]:
        """How the system prompt lists `tools` (numbered, signature, description)."""
        return [ToolSpec(t.function, t.shape.signature, t.shape.docstring, "") for t in tools]


__all__ = ["NO_LIMIT", "HostTool", "Toolbox"]
