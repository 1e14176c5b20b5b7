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
from server.settings import Settings

if TYPE_CHECKING:
    from server.mcp.manager import McpManager

MAX_EXECUTION_TIMEOUT_S = 600.0


def sandbox_limits(settings: Settings) -> Limits:
    """Per-session limits; a request's ``execution_timeout`` only shortens or stretches wall time."""
    return Limits(
        wall_seconds=settings.execution_timeout,
        cpu_seconds=MAX_EXECUTION_TIMEOUT_S,
        memory_mb=settings.sandbox_memory_mb,
        host_call_seconds=settings.tool_timeout,
    )


class AgentRuntime:
    """The sandbox pool, the session store and the idle-session reaper."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        pool: SandboxPool,
        sandbox_env: environment.EnvInfo | None = None,
        mcp: McpManager | None = None,
    ) -> None:
        self.settings = settings
        #: The configured MCP servers (None without --mcp-config); started and stopped by the app.
        self.mcp = mcp
        self.sandbox_env = sandbox_env
        self.engine = engine
        self.pool = pool
        self.limits = sandbox_limits(settings)
        self.sessions = SessionStore(
            lambda: pool.acquire(limits=self.limits, network=settings.sandbox_network),
            max_sessions=settings.max_sessions,
            ttl_s=settings.session_ttl,
        )
        self._reaper: asyncio.Task[None] | None = None
        # Called as observer(run, event) for every event of every run (metrics, audit log).
        self.observers: list[Callable[[Any, Any], None]] = []

    def start_reaper(self) -> None:
        """Expire idle sessions in the background (needs a running event loop)."""
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        interval = max(1.0, min(self.settings.session_ttl / 4, 30.0))
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
