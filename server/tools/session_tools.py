"""Giving a new agent session its host tools: MCP servers' tools and the client's function tools.

Called once, when a session is created: the stubs are defined in its sandbox (they come back
after a worker restart, see ``Sandbox.define``), the toolbox becomes the sandbox's host-call
handler, and the returned specs go into the system prompt under the tool heading. A request
naming an MCP server that is not configured is a 400 naming ``mcp_servers``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from server.agent.prompts import ToolSpec
from server.api.errors import InvalidRequest
from server.mcp.manager import McpManager, McpTool
from server.tools.toolbox import HostTool, Toolbox


def mcp_host_tools(manager: McpManager | None, servers: Sequence[str] | None) -> list[HostTool]:
    """The tools of the chosen servers (all configured ones when `servers` is None)."""
    if manager is None:
        if servers:
            raise InvalidRequest("mcp_servers: this server has no MCP servers configured (--mcp-config)",
                                 param="mcp_servers")
        return []
    if servers is not None:
        unknown = [s for s in servers if s not in manager.connections]
        if unknown:
            raise InvalidRequest(
                f"mcp_servers: no MCP server named {', '.join(unknown)}; configured: "
                f"{', '.join(manager.connections) or '(none)'}", param="mcp_servers")
    return [_mcp_tool(manager, tool) for tool in manager.tools(servers)]


def _mcp_tool(manager: McpManager, tool: McpTool) -> HostTool:
    def call(arguments: dict[str, Any], timeout: float | None) -> Any:
        return manager.call(tool, arguments, timeout)

    return HostTool(tool.function, tool.description, tool.input_schema, call, origin=f"mcp:{tool.server}")


async def install(executor: Any, tools: Sequence[HostTool]) -> list[ToolSpec]:
    """Define `tools` in the session's sandbox and make them its host-call handler."""
    if not tools:
        return []
    toolbox = Toolbox(tools)
    executor.host_calls = toolbox
    await asyncio.to_thread(executor.define, Toolbox.prelude(tools))
    return Toolbox.specs(tools)
