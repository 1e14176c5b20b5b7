"""Giving a new agent session its host tools: MCP servers' tools and the client's function tools.

Called once, when a session is created: the stubs are defined in its sandbox (they come back
after a worker restart, see ``Sandbox.define``), the toolbox becomes the sandbox's host-call
handler, and the returned specs go into the system prompt under the tool heading. A request
naming an MCP server that is not configured is refused (``ToolRequestError`` on
``mcp_servers``, which the agent service raises as its own ``AgentRequestError``: a 400
naming it).

No MCP and no web framework here (the agent service calls this module): the MCP servers
come in as ``ToolServers``, which ``server.mcp.manager.McpManager`` is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from sandbox.executor import on_own_thread
from server.tools.client_calls import ClientFunction, ClientToolBridge
from server.tools.toolbox import HostTool, Toolbox, ToolSpec


class ToolRequestError(Exception):
    """The tools a request asks for cannot be given; ``param`` names the request field."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


class ToolServers(Protocol):
    """The configured MCP servers, by name, and their tools as host tools."""

    @property
    def names(self) -> Sequence[str]: ...

    def host_tools(self, servers: Sequence[str] | None = None) -> list[HostTool]: ...


def mcp_host_tools(manager: ToolServers | None, servers: Sequence[str] | None) -> list[HostTool]:
    """The tools of the chosen servers (all configured ones when `servers` is None)."""
    if manager is None:
        if servers:
            raise ToolRequestError(
                "mcp_servers: this server has no MCP servers configured (--mcp-config)", param="mcp_servers"
            )
        return []
    if servers is not None:
        unknown = [s for s in servers if s not in manager.names]
        if unknown:
            raise ToolRequestError(
                f"mcp_servers: no MCP server named {', '.join(unknown)}; configured: "
                f"{', '.join(manager.names) or '(none)'}",
                param="mcp_servers",
            )
    return manager.host_tools(servers)


async def install(session: Any, tools: Sequence[HostTool]) -> list[ToolSpec]:
    """Define `tools` in the session's sandbox and add them to its host-call handler; their
    specs for the prompt. A tool the session already has from the same origin is left out (a
    client resends its tools with every request); two origins that would define the same
    function are a 400 naming the field, never one silently shadowing the other."""
    executor = session.executor
    toolbox = executor.host_calls if isinstance(executor.host_calls, Toolbox) else Toolbox()
    if session.bridge is not None and session.bridge.cancel not in toolbox.cancel_callbacks:
        toolbox.on_cancel(session.bridge.cancel)
    fresh: list[HostTool] = []
    for tool in tools:
        earlier = next((t for t in [*toolbox.tools, *fresh] if t.function == tool.function), None)
        if earlier is None:
            fresh.append(tool)
        elif earlier.origin != tool.origin:
            field = "tools" if "client" in (earlier.origin, tool.origin) else "mcp_servers"
            raise ToolRequestError(
                f"{field}: the function {tool.function} would be both the {_origin_words(earlier.origin)} and the "
                f"{_origin_words(tool.origin)}; rename the client tool or leave one MCP server out",
                param=field,
            )
    if not fresh:
        return []
    for tool in fresh:
        toolbox.add(tool)
    executor.host_calls = toolbox
    await on_own_thread(executor.define, Toolbox.prelude(fresh), name="sandbox-define")
    return Toolbox.specs(fresh)


def _origin_words(origin: str) -> str:
    return "client's function tool" if origin == "client" else f"tool of MCP server {origin.removeprefix('mcp:')!r}"


def client_host_tools(session: Any, functions: Sequence[ClientFunction]) -> list[HostTool]:
    """The client's function tools, answered through the session's bridge (made on first use)."""
    if not functions:
        return []
    if session.bridge is None:
        session.bridge = ClientToolBridge(asyncio.get_running_loop())
    return [session.bridge.host_tool(f.name, f.description, f.parameters) for f in functions]
