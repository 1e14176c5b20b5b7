"""A real MCP server for the tests, written with the official ``mcp`` package.

Run as a stdio server (``python demo_mcp_server.py``), or served over Streamable HTTP by a
test through ``app()``. Its tools cover what the agent tests need: structured results, a
plain value, text, a tool error, a slow tool (timeouts) and one that kills the server.
"""

from __future__ import annotations

import asyncio
import os

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

server = MCPServer("demo")


class Weather(BaseModel):
    city: str
    temp_c: float
    sky: str


@server.tool()
def weather(city: str, units: str = "metric") -> Weather:
    """Current weather of a city."""
    return Weather(city=city, temp_c=float(len(city)) if units == "metric" else 32 + 1.8 * len(city), sky="clear")


@server.tool()
def add(a: int, b: int = 1) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def shout(text: str = Field(description="what to shout")) -> str:
    """The text in capitals."""
    return text.upper()


@server.tool()
def refuse(reason: str) -> str:
    """Always fails with the reason."""
    raise ToolError(f"refused: {reason}")


@server.tool()
async def slow(seconds: float) -> str:
    """Sleeps, then answers."""
    await asyncio.sleep(seconds)
    return "slept"


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def die() -> str:
    """Ends the server process at once, mid-call."""
    os._exit(3)


def app():  # noqa: ANN201 - a Starlette app
    """The Streamable HTTP app (stateless JSON responses keep the test server simple)."""
    return server.streamable_http_app(json_response=True)


if __name__ == "__main__":
    server.run()
