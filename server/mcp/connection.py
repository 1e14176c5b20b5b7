"""One MCP server, kept connected: started with ours, restarted when it dies, stopped with ours.

Why a supervising task per server: the ``mcp`` SDK's transports and ``ClientSession`` are
async context managers that must be entered and left in one task, and a stdio server is a
child process the transport owns. So one long-lived task holds the connection open, pings it
while idle, and on any failure (the process exited, the HTTP server went away, a ping timed
out, a call saw the connection close) leaves the contexts, waits a growing back-off and
connects again; the back-off doubles while attempts keep failing and starts over after a
connection that ran. Calls come from other tasks and use the current session; while the server
is down they wait a little for it to come back, then fail with the reason.

States: ``starting`` (first attempt), ``running``, ``restarting`` (it was running or a retry
is due), ``failed`` (the first attempt failed; retries go on), ``stopped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
import httpx2
import mcp_types
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from server.mcp.config import HttpServer, ServerConfig, StdioServer

log = logging.getLogger(__name__)

State = Literal["starting", "running", "restarting", "failed", "stopped"]

STARTUP_TIMEOUT_S = 30.0
PING_INTERVAL_S = 5.0
PING_TIMEOUT_S = 5.0
#: How long a call waits for a server that is down to come back before it fails.
RECONNECT_WAIT_S = 10.0
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


class McpUnavailable(Exception):
    """The server is not connected (it failed to start, or died and has not come back)."""


def describe(exc: BaseException) -> str:
    """One line for /health and the log; exception groups name their first leaf."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


class McpConnection:
    """A supervised connection to one configured server (create and use on one event loop)."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        startup_timeout: float = STARTUP_TIMEOUT_S,
        ping_interval: float = PING_INTERVAL_S,
    ) -> None:
        self.config = config
        self.name = config.name
        self.state: State = "starting"
        self.error: str | None = None
        self.tools: list[mcp_types.Tool] = []
        self.restarts = 0
        self._startup_timeout = startup_timeout
        self._ping_interval = ping_interval
        self._session: ClientSession | None = None
        self._running = asyncio.Event()
        self._settled = asyncio.Event()  # the first attempt ended, either way
        self._reconnect = asyncio.Event()
        self._stopping = False
        #: The last attempt reached ``running`` (the back-off starts over after it fails).
        self._connected = False
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"mcp-{self.name}")

    async def wait_settled(self, timeout: float) -> None:
        """Until the first attempt ended (running or failed), at most `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)

    async def stop(self) -> None:
        self._stopping = True
        self._reconnect.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            except Exception:  # noqa: BLE001 - the supervisor logs its own failures
                pass
        self.state = "stopped"

    def health(self) -> dict[str, Any]:
        return {"state": self.state, "tools": len(self.tools), "restarts": self.restarts, "error": self.error}

    # -- calls -----------------------------------------------------------------------
    async def call(self, tool: str, arguments: dict[str, Any], timeout: float | None) -> mcp_types.CallToolResult:
        """Call a tool; McpUnavailable when the server is down, MCPError from the protocol."""
        if not self._running.is_set():
            wait = RECONNECT_WAIT_S if timeout is None else min(timeout, RECONNECT_WAIT_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._running.wait(), wait)
        session = self._session
        if session is None:
            raise McpUnavailable(f"MCP server {self.name} is not running ({self.error or self.state})")
        try:
            return await session.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.code == mcp_types.CONNECTION_CLOSED:
                self._reconnect.set()
            raise

    # -- the supervisor ----------------------------------------------------------------
    async def _supervise(self) -> None:
        delay = FIRST_BACKOFF_S
        while not self._stopping:
            try:
                await self._connect_and_serve()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - any failure means: reconnect
                self.error = describe(exc)
                log.warning("MCP server %s: %s", self.name, self.error)
            finally:
                self._session = None
                self._running.clear()
            if self._stopping:
                break
            self.state = "failed" if self.state == "starting" else "restarting"
            self._settled.set()
            self.restarts += 1
            if self._connected:  # it ran: this is a new failure, not the same one again
                self._connected, delay = False, FIRST_BACKOFF_S
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _connect_and_serve(self) -> None:
        async with self._transport() as streams, ClientSession(streams[0], streams[1]) as session:
            with anyio.fail_after(self._startup_timeout):
                await session.initialize()
                listed = await session.list_tools()
            self.tools = list(listed.tools)
            self._session = session
            self._connected = True
            self._reconnect.clear()
            self.state, self.error = "running", None
            self._running.set()
            self._settled.set()
            log.info("MCP server %s: running, %d tools", self.name, len(self.tools))
            while not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reconnect.wait(), self._ping_interval)
                if self._reconnect.is_set():
                    if not self._stopping:
                        raise McpUnavailable("the connection closed")
                    return
                with anyio.fail_after(PING_TIMEOUT_S):
                    await session.send_ping()

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[Any]:
        config = self.config
        if isinstance(config, StdioServer):
            params = StdioServerParameters(
                command=config.command, args=list(config.args), env=config.env or None, cwd=config.cwd
            )
            async with stdio_client(params) as streams:
                yield streams
        else:
            assert isinstance(config, HttpServer)
            client: httpx2.AsyncClient = create_mcp_http_client(headers=config.headers or None)
            async with client, streamable_http_client(config.url, http_client=client) as streams:
                yield streams
