"""``GET /v1/mcp/tools``: the MCP tools this server loaded, as the sandbox's functions see them.

Each entry names the server and the tool as MCP knows them, the Python function agent code
calls (``<server>_<tool>``), its generated signature and docstring, the input schema, whether
its annotations say it only reads, and whether a call asks for approval by the config
(``requires_approval``; a request's ``mcp`` tool may add approvals, never remove one).
A server that is not running contributes no tools; ``servers`` says why (also in /health).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from server.tools.approvals.rules import configured
from server.tools.signature import shape

router = APIRouter(prefix="/v1/mcp")


@router.get("/tools")
async def list_mcp_tools(request: Request) -> dict[str, Any]:
    runtime = request.app.state.agent
    manager = runtime.mcp
    if manager is None:
        return {"object": "list", "data": [], "servers": {}}
    data = []
    for tool in manager.tools():
        function = shape(tool.function, tool.description, tool.input_schema)
        data.append(
            {
                "object": "mcp.tool",
                "server": tool.server,
                "name": tool.name,
                "function": tool.function,
                "signature": function.signature,
                "docstring": function.docstring,
                "input_schema": tool.input_schema,
                "read_only": tool.read_only,
                "requires_approval": configured(tool.require_approval, tool.name, tool.read_only),
            }
        )
    return {"object": "list", "data": data, "servers": manager.health()}
