"""All configured MCP servers: started together, listed, called from sandbox threads, stopped.

Why calls hop threads: a tool call arrives on the thread that runs a sandbox execution
(``sandbox.bridge``), while the MCP connections live on the server's event loop. `start_call`
schedules the call there as a task and returns its future without blocking; cancelling the
future cancels the task, so a call the sandbox gave up on stops (the SDK tells the server).
Arguments reach it checked (``sandbox.bridge.calls.check``): a string no UTF-8 encoder takes
(a lone surrogate) once broke a shared connection for every session. One server failing to start is
logged and shown in ``/health``; the others serve regardless, and the failed one keeps retrying.

How a result becomes Python data: the structured content when the tool gives it (the SDK
wraps a non-object return value as ``{"result": value}``, with an output schema of that one
property: that wrapper is taken off), else the text of its content blocks; ``is_error``
raises `HostCallError` with the tool's message, so the code sees a ``ToolCallError``.

Approvals: each `McpTool` carries what decides whether a call asks first (its server's
``require_approval`` and its ``readOnlyHint``); the session puts such tools behind its
approvals (``server.tools.approvals``), using the settings the composition sets here
(``approval_timeout``, ``call_timeout``, ``on_decision``: the audit log).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import mcp_types
from mcp import MCPError

from sandbox.host_calls import HostCallError
from server.mcp.config import ServerConfig
from server.mcp.connection import McpConnection, McpUnavailable
from server.tools.approvals.gate import OnDecision
from server.tools.approvals.rules import Rule
from server.tools.signature import python_name
from server.tools.toolbox import HostTool

log = logging.getLogger(__name__)

#: How long start-up waits for the servers' first connection before serving anyway.
START_WAIT_S = 30.0


@dataclass(frozen=True)
class McpTool:
    """One tool of one server, under the Python name the sandbox gives it."""

    server: str
    name: str
    function: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    #: The tool's annotations say ``readOnlyHint: true``.
    read_only: bool = False
    #: Its server's ``require_approval`` (None: ask unless read-only).
    require_approval: Rule | None = None


class McpManager:
    """The configured servers' connections on the server's event loop."""

    def __init__(self, configs: Sequence[ServerConfig], **connection_options: Any) -> None:
        self.connections = {c.name: McpConnection(c, **connection_options) for c in configs}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rules = {c.name: c.require_approval for c in configs}
        #: Seconds a call waits for a person's decision (``--approval-timeout``).
        self.approval_timeout = 600.0
        #: Seconds an approved call may take (``--tool-timeout``).
        self.call_timeout = 60.0
        #: Where each approval decision is recorded (the audit log), if anywhere.
        self.on_decision: OnDecision | None = None

    async def start(self, wait: float = START_WAIT_S) -> None:
        """Start every server and wait (bounded) until each is running or has failed."""
        self._loop = asyncio.get_running_loop()
        for connection in self.connections.values():
            connection.start()
        await asyncio.gather(*(c.wait_settled(wait) for c in self.connections.values()))
        for name, connection in self.connections.items():
            if connection.state != "running":
                log.error(
                    "MCP server %s did not start (%s); its tools are unavailable until it does",
                    name,
                    connection.error or connection.state,
                )

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.connections.values()))

    def health(self) -> dict[str, Any]:
        return {name: c.health() for name, c in self.connections.items()}

    def tools(self, servers: Sequence[str] | None = None) -> list[McpTool]:
        """The tools of the named servers (all when None), in config then listing order."""
        chosen = self.connections if servers is None else {s: self.connections[s] for s in servers}
        return [
            McpTool(
                name,
                tool.name,
                python_name(name, tool.name),
                tool.description or "",
                dict(tool.input_schema or {}),
                dict(tool.output_schema) if tool.output_schema else None,
                bool(tool.annotations is not None and tool.annotations.read_only_hint),
                self._rules.get(name),
            )
            for name, connection in chosen.items()
            for tool in connection.tools
        ]

    @property
    def names(self) -> list[str]:
        """The configured servers' names, in config order."""
        return list(self.connections)

    def host_tools(self, servers: Sequence[str] | None = None) -> list[HostTool]:
        """The named servers' tools (all when None) as functions for a session's sandbox."""
        return [self._host_tool(tool) for tool in self.tools(servers)]

    def _host_tool(self, tool: McpTool) -> HostTool:
        def start(arguments: dict[str, Any], timeout: float) -> Future[Any]:
            return self.start_call(tool, arguments, timeout)

        return HostTool(tool.function, tool.description, tool.input_schema, start, origin=f"mcp:{tool.server}")

    def start_call(self, tool: McpTool, arguments: dict[str, Any], timeout: float) -> Future[Any]:
        """Start a call from a sandbox thread; the future holds the value for the code, or
        fails with HostCallError. The bridge has checked the arguments as strict JSON text."""
        assert self._loop is not None, "McpManager.start() was not awaited"
        try:
            return asyncio.run_coroutine_threadsafe(self.call(tool, arguments, timeout), self._loop)
        except RuntimeError as exc:  # the loop is closed: the server is stopping
            raise HostCallError(f"{tool.function} was not called: the server is stopping") from exc

    async def call(self, tool: McpTool, arguments: dict[str, Any], timeout: float) -> Any:
        """One call on the event loop: the value for the code, or HostCallError."""
        connection = self.connections[tool.server]
        try:
            result = await asyncio.wait_for(connection.call(tool.name, arguments, timeout), timeout + 5)
        except TimeoutError as exc:
            raise HostCallError(f"{tool.function} did not answer within {timeout:g} s") from exc
        except McpUnavailable as exc:
            raise HostCallError(str(exc)) from exc
        except MCPError as exc:
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                raise HostCallError(f"{tool.function} did not answer within {timeout:g} s") from exc
            raise HostCallError(f"{tool.function}: MCP error {exc.code}: {exc.message}") from exc
        return result_value(result, tool)


def result_value(result: mcp_types.CallToolResult, tool: McpTool) -> Any:
    """A tool result as the code receives it (see the module docstring)."""
    text = _text(result.content)
    if result.is_error:
        raise HostCallError(text or f"{tool.function} failed")
    structured = result.structured_content
    if structured is not None:
        properties = (tool.output_schema or {}).get("properties")
        if (
            isinstance(structured, dict)
            and list(structured) == ["result"]
            and isinstance(properties, dict)
            and list(properties) == ["result"]
        ):
            return structured["result"]
        return structured
    return text


def _text(blocks: Sequence[Any]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        else:
            kind = getattr(block, "mime_type", None) or getattr(block, "type", "content")
            parts.append(f"[{kind} content not shown]")
    return "\n".join(parts)
