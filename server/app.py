"""The app factory: routes, error handlers and state, nothing global.

The engine is built before the app (by the CLI, or by a test with the scripted model), so
a broken model file fails before any socket is bound. The factory owns what lives and dies
with the server: the agent session store and its sandbox pool.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from models.engine_api import Engine
from server.agent_runtime import AgentRuntime
from server.errors import install_error_handlers
from server.routes_agent import router as agent_router
from server.routes_openai import router as openai_router
from server.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, engine: Engine, *, close_engine: bool = True) -> FastAPI:
    """Build the HTTP app around a loaded engine.

    ``close_engine`` lets tests share one loaded model between several apps.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        info = engine.info
        log.info(
            "serving %s (%s) on %s, %d/%d layers offloaded, context %d tokens",
            info.model_id,
            info.model_path,
            info.backend,
            info.offloaded_layers,
            info.total_layers,
            info.context_length,
        )
        runtime = AgentRuntime.start(settings, engine)
        app.state.agent = runtime
        app.state.health_extras = runtime.health
        try:
            yield
        finally:
            runtime.close()
            if close_engine:
                engine.close()

    app = FastAPI(
        title="codeact-server",
        summary="Local CodeAct agent server with an OpenAI-compatible API",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    install_error_handlers(app)
    app.include_router(openai_router)
    app.include_router(agent_router)
    return app
