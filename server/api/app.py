"""The app factory: routes, error handlers, middleware and state, nothing global.

The engine is built before the app (by the CLI, or by a test with the scripted model), so
a broken model file fails before any socket is bound. The app holds what lives and dies
with the server (the agent session store and its sandbox pool, the MCP servers, the
metrics, the audit log), built by ``server.composition`` and run by the lifespan. The
records store (``server.store``) opens here, before any socket is bound: a store another
server holds fails start-up, and runs the last process left going are marked failed.

Middleware, outermost first: metrics (so refusals are counted too), the Host and Origin
checks against DNS rebinding and foreign pages (``server.api.host_guard``), a 503 for requests
that shutdown cuts off (``server.api.shutdown``), CORS (only with
``cors_origin``; answers preflights, and puts its headers on 401s), bearer auth (only with
keys), body size. Message-count and max_tokens limits are a dependency of the API routers.
On shutdown (SIGTERM after the drain, see ``server.cli.main``) the lifespan closes every
session, so no sandbox worker outlives the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from models.engine.api import Engine
from server.api.auth import BearerAuth, load_api_keys
from server.api.errors import install_error_handlers
from server.api.host_guard import HostGuard, allowed_hosts
from server.api.json_body import EncodableJSONResponse
from server.api.openapi_errors import AGENT_RESPONSES
from server.api.request_limits import BodySizeLimit, enforce_request_limits, publish_limits
from server.api.routes.agent.run import router as agent_router
from server.api.routes.agent.sessions import router as sessions_router
from server.api.routes.agent.stored import router as agent_runs_router
from server.api.routes.approvals import router as approvals_router
from server.api.routes.chat import router as openai_router
from server.api.routes.completions import router as completions_router
from server.api.routes.mcp import router as mcp_router
from server.api.routes.responses.create import router as responses_router
from server.api.routes.responses.stored import router as stored_responses_router
from server.api.routes.tokenize import router as tokenize_router
from server.api.routes.ui import router as ui_router
from server.api.shutdown import AnswerCancelledRequests
from server.api.streams.background import BackgroundRuns
from server.composition import metered, running_agent
from server.mcp import config as mcp_config
from server.metrics import Metrics, MetricsMiddleware
from server.metrics import router as metrics_router
from server.settings import MiB, Settings
from server.store import Store

log = logging.getLogger(__name__)

ENGINE_IDLE_WAIT_S = 120.0


def create_app(settings: Settings, engine: Engine, *, close_engine: bool = True) -> FastAPI:
    """Build the HTTP app around a loaded engine.

    ``close_engine`` lets tests share one loaded model between several apps. Raises
    ``server.api.auth.AuthConfigError`` when the API key file cannot be used, and
    ``server.mcp.config.McpConfigError`` when the MCP config is broken.
    """
    keys = load_api_keys(settings)
    mcp_servers = mcp_config.load(settings.mcp_config) if settings.mcp_config else []
    engine, metrics = metered(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        info = engine.info
        log.info(
            "serving %s (%s) on %s, %d/%d layers offloaded, context %d tokens, %d requests per batch",
            info.model_id,
            info.model_path,
            info.backend,
            info.offloaded_layers,
            info.total_layers,
            info.context_length,
            info.parallel_sequences,
        )
        try:
            async with running_agent(settings, engine, mcp_servers, metrics, store) as runtime:
                app.state.agent = runtime
                app.state.health_extras = runtime.health
                try:
                    yield
                finally:  # before the sessions close: unfinished background runs fail, saying why
                    await app.state.background.close()
        finally:
            store.close()  # after the runs: their endings are written first
            if close_engine:
                await _wait_until_idle(engine)
                engine.close()

    app = FastAPI(
        title="codeact-server",
        summary="Local CodeAct agent server with an OpenAI-compatible API",
        lifespan=lifespan,
        default_response_class=EncodableJSONResponse,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    store = Store.open(settings.store_path(), max_age_s=settings.store_max_age, max_bytes=settings.store_max_mb * MiB)
    interrupted = store.runs.fail_interrupted()
    if interrupted:
        log.warning(
            "%d background runs were going when the server last stopped: marked failed (server_restart)", interrupted
        )
    app.state.store = store
    app.state.responses = store.responses
    app.state.background = BackgroundRuns(
        settings.background_max_running,
        settings.background_max_events,
        on_outcome=lambda outcome: metrics.background_runs.labels(outcome).inc(),
        on_resumption=metrics.background_resumptions.inc,
        records=store.runs,
    )
    metrics.watch(engine.queue_depth, lambda: _live_sessions(app))
    install_error_handlers(app)
    limits = [Depends(enforce_request_limits)]
    app.include_router(openai_router, dependencies=limits)
    app.include_router(completions_router, dependencies=limits)
    app.include_router(responses_router, dependencies=limits)
    app.include_router(stored_responses_router, dependencies=limits)
    app.include_router(tokenize_router, dependencies=limits)
    app.include_router(agent_router, dependencies=limits, responses=AGENT_RESPONSES)
    app.include_router(sessions_router, dependencies=limits, responses=AGENT_RESPONSES)
    app.include_router(agent_runs_router, dependencies=limits, responses=AGENT_RESPONSES)
    app.include_router(approvals_router, dependencies=limits, responses=AGENT_RESPONSES)
    app.include_router(mcp_router)
    app.include_router(metrics_router)
    app.include_router(ui_router)
    _add_middleware(app, settings, keys, metrics)
    _publish_limits(app, settings)
    return app


def _publish_limits(app: FastAPI, settings: Settings) -> None:
    """The document FastAPI builds, with this server's request caps in it (built once)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = publish_limits(
                build(), settings.max_tokens_limit, settings.max_messages, app.state.engine.info.vocab_size
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_middleware(app: FastAPI, settings: Settings, keys: tuple[str, ...], metrics: Metrics) -> None:
    """Added innermost first (Starlette wraps each new one around the previous ones)."""
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    if keys:
        app.add_middleware(BearerAuth, keys=keys)
    if settings.cors_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin,
            allow_methods=["*"],
            allow_headers=["*"],
            max_age=600,
        )
    app.add_middleware(AnswerCancelledRequests)
    app.add_middleware(
        HostGuard,
        hosts=allowed_hosts(settings.host, settings.allowed_host),
        cors_origins=settings.cors_origin,
        on_refuse=metrics.count_refusal,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)


async def _wait_until_idle(engine: Engine, limit_s: float = ENGINE_IDLE_WAIT_S) -> None:
    """Let a cancelled generation reach its next token before the model is freed.

    By now every request was answered or cancelled, and a cancelled generation stops at
    its next token; but a long prompt decode on a CPU cannot be interrupted, and freeing
    the model under it would crash the process instead of exiting cleanly.
    """
    deadline = time.monotonic() + limit_s
    while engine.queue_depth() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if engine.queue_depth():
        log.warning("a generation is still running after %.0f s; closing the model anyway", limit_s)


def _live_sessions(app: FastAPI) -> int:
    runtime = getattr(app.state, "agent", None)
    return len(runtime.sessions) if runtime is not None else 0
