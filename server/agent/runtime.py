"""What the agent endpoints need at run time: the sandbox pool and the session store.

Built by ``server.composition.start_agent_runtime`` in the app's lifespan and closed with it,
so every sandbox worker stops when the server stops (workers also die on their own if the
server is killed: see ``sandbox``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from models.engine.api import Engine
from sandbox import Limits, SandboxPool, environment
from server.agent.sessions import SessionStore

if TYPE_CHECKING:
    from server.mcp.manager import McpManager


class AgentRuntime:
    """The sandbox pool, the session store and the idle-session reaper.

    It receives its parts, already built (``server.composition``): the agent knows no
    settings, only the limits and sizes it is given.
    """

    def __init__(
        self,
        engine: Engine,
        pool: SandboxPool,
        *,
        limits: Limits,
        network: bool,
        max_sessions: int,
        session_ttl: float,
        sandbox_env: environment.EnvInfo | None = None,
        mcp: McpManager | None = None,
    ) -> None:
        #: The configured MCP servers (None without --mcp-config); started and stopped by the app.
        self.mcp = mcp
        self.sandbox_env = sandbox_env
        self.engine = engine
        self.pool = pool
        self.limits = limits
        self.session_ttl = session_ttl
        self.sessions = SessionStore(
            lambda: pool.acquire(limits=self.limits, network=network),
            max_sessions=max_sessions,
            ttl_s=session_ttl,
        )
        self._reaper: asyncio.Task[None] | None = None
        # Called as observer(run, event) for every event of every run (metrics, audit log).
        self.observers: list[Callable[[Any, Any], None]] = []

    def start_reaper(self) -> None:
        """Expire idle sessions in the background (needs a running event loop)."""
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        interval = max(1.0, min(self.session_ttl / 4, 30.0))
        while True:
            await asyncio.sleep(interval)
            self.sessions.expire_idle()

    def health(self) -> dict[str, Any]:
        return {
            "sandbox_isolation": self.pool.isolation,
            "sessions": len(self.sessions),
            "max_sessions": self.sessions.max_sessions,
            "sandbox_pool_idle": self.pool.idle,
            "sandbox_env": None if self.sandbox_env is None else self.sandbox_env.to_json(),
            "mcp_servers": {} if self.mcp is None else self.mcp.health(),
        }

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        self.sessions.close_all()
        self.pool.close()
