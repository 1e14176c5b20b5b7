"""The composition root: from ``Settings`` to the running parts (engine, sandbox pool, sessions,
and the services around them: MCP servers, metrics, audit log).

Why one module: the CLI, the app's lifespan, the tests and the benchmarks all need the same
engine for the same settings, and the same sandbox pool behind the sessions. Built here
once, nobody imports the command line to get a model, and ``server.agent`` keeps no
knowledge of how its executors are made: it receives them.

Failures a user can fix (no such model, a backend that does not answer, a flag missing) are
``SetupError``; the CLI prints them as one line with the exit code their ``kind`` names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal

from models.engine.api import Engine
from sandbox import Limits, SandboxPool, environment
from server.agent.runtime import AgentRuntime
from server.settings import Settings

if TYPE_CHECKING:
    from server.mcp.config import ServerConfig
    from server.mcp.manager import McpManager
    from server.metrics import Metrics
    from server.store import Store

log = logging.getLogger("codeact_server")

SetupErrorKind = Literal["model", "usage"]
MAX_EXECUTION_TIMEOUT_S = 600.0


class SetupError(Exception):
    """A configuration the server cannot start with; ``kind`` says whose it is to fix."""

    def __init__(self, message: str, kind: SetupErrorKind) -> None:
        super().__init__(message)
        self.kind: SetupErrorKind = kind


def build_engine(settings: Settings) -> Engine:
    """Resolve and load the model (or connect the remote backend) that ``settings`` name."""
    if settings.engine == "openai":
        return _remote_engine(settings)
    load_llama_first(settings)
    from models.errors import ModelError
    from models.store.local import resolve_model  # imports gguf, and so numpy: after libllama

    try:
        resolved = resolve_model(settings.model, settings.quant)
    except ModelError as exc:
        raise SetupError(str(exc), "model") from exc
    log.info("%s", resolved.log_line)
    from models.engine.api import EngineError
    from models.engine.llama.engine import LlamaEngine

    aliases = tuple(dict.fromkeys(a for a in (resolved.path.name, "default", settings.model) if a != resolved.name))
    try:
        return LlamaEngine(
            resolved.path,
            model_id=resolved.name,
            n_gpu_layers=settings.n_gpu_layers,
            ctx_size=settings.ctx_size,
            threads=settings.threads,
            batch_size=settings.batch_size,
            max_queue=settings.max_queue,
            aliases=aliases,
            parallel=settings.parallel,
            lookup_draft_tokens=settings.lookup_draft_tokens,
            stream_interval_ms=settings.stream_interval_ms,
            flash_attn=settings.flash_attn,
            state_cache_mb=settings.state_cache_mb,
        )
    except EngineError as exc:
        raise SetupError(f"{exc}; check the file or run `codeact-server models`", "model") from exc


def load_llama_first(settings: Settings) -> None:
    """Load libllama before any C++ extension when ``settings`` run the local engine.

    ``models.engine.llama.library.load_first`` says why (a CUDA build crashed at model load
    when numpy came first). ``serve`` calls this before anything else it imports; building the
    engine calls it again (a no-op) for every other caller. ``--engine openai`` loads nothing.
    """
    if settings.engine != "llama":
        return
    # Imported here: llama_cpp loads its shared library on import, which `--engine openai`,
    # `pull` and `models` never need.
    from models.engine.api import EngineError
    from models.engine.llama.library import load_first

    try:
        load_first(settings.llama_lib)
    except EngineError as exc:
        raise SetupError(str(exc), "usage") from exc


def _remote_engine(settings: Settings) -> Engine:
    """The ``--engine openai`` backend: no local model, one check that the backend answers."""
    if not settings.engine_url:
        raise SetupError("--engine openai needs --engine-url (the backend's base URL)", "usage")
    from models.engine.api import EngineError
    from models.engine.remote import RemoteEngine

    try:
        engine = RemoteEngine(
            settings.engine_url,
            model_id=None if settings.model == "auto" else settings.model,
            grammar_style=settings.engine_grammar,
            max_queue=settings.max_queue,
            context_length=settings.ctx_size,
            aliases=("default",),
        )
    except EngineError as exc:
        raise SetupError(f"{exc}; is the backend running?", "model") from exc
    log.info(
        "generation on %s (model %s, grammar %s, token counts %s)",
        settings.engine_url,
        engine.info.model_id,
        engine.info.grammar_support,
        engine.info.token_counts,
    )
    return engine


def sandbox_limits(settings: Settings) -> Limits:
    """Per-session limits; a request's ``execution_timeout`` only shortens or stretches wall time."""
    return Limits(
        wall_seconds=settings.execution_timeout,
        cpu_seconds=MAX_EXECUTION_TIMEOUT_S,
        memory_mb=settings.sandbox_memory_mb,
        host_call_seconds=settings.tool_timeout,
        host_wait_seconds=settings.tool_wait_limit,
    )


def start_agent_runtime(settings: Settings, engine: Engine, mcp: McpManager | None = None) -> AgentRuntime:
    """Resolve the sandbox's interpreter, start the warm pool, and the sessions over it.

    Raises ``environment.SandboxEnvError`` (with the command that fixes it) when the
    sandbox environment is missing. Inside a running event loop the idle-session reaper
    starts too; without one the caller drives expiry. ``mcp``: the started MCP servers.
    """
    python, managed = environment.resolve(settings.sandbox_python, settings.sandbox_env)
    env = environment.inspect_once(python, managed=managed)
    if env.missing:
        log.warning(
            "the sandbox interpreter %s lacks %s: agent code cannot import them", python, ", ".join(env.missing)
        )
    pool = SandboxPool(
        size=settings.sandbox_pool_size,
        network=settings.sandbox_network,
        limits=sandbox_limits(settings),
        isolation_level=settings.sandbox_isolation,
        python=str(python),
        preimport=settings.sandbox_preimport,
        keep_processes=settings.sandbox_keep_processes,
    )
    if pool.isolation != "namespaces":
        log.warning(
            "sandbox isolation is %r: agent code runs without namespace isolation "
            "(install bubblewrap and allow unprivileged user namespaces for full isolation)",
            pool.isolation,
        )
    else:
        log.info("sandbox isolation: %s", pool.isolation)
    log.info("sandbox interpreter: %s (Python %s)", python, env.version)
    runtime = AgentRuntime(
        engine,
        pool,
        limits=sandbox_limits(settings),
        network=settings.sandbox_network,
        max_sessions=settings.max_sessions,
        session_ttl=settings.session_ttl,
        sandbox_env=env,
        mcp=mcp,
    )
    with contextlib.suppress(RuntimeError):  # no running loop: a caller drives expiry
        runtime.start_reaper()
    return runtime


def metered(engine: Engine) -> tuple[Engine, Metrics]:
    """``engine`` with every generation counted in a new ``Metrics`` (what ``/metrics`` shows)."""
    # Imported here, as the services below: the web framework (metrics' route) and the MCP
    # SDK cost start-up time that `pull`, `run` and the benchmarks, which only need an
    # engine from this module, never use.
    from server.metered_engine import MeteredEngine
    from server.metrics import Metrics

    metrics = Metrics()
    return MeteredEngine(engine, metrics.record_generation), metrics


@asynccontextmanager
async def running_agent(
    settings: Settings, engine: Engine, mcp_servers: Sequence[ServerConfig], metrics: Metrics, store: Store
) -> AsyncIterator[AgentRuntime]:
    """The agent runtime and its services for the life of an app: the MCP servers started,
    every run observed by ``metrics``, recorded step by step in ``store`` and (with
    ``--audit-log``) the audit log; sessions' closings recorded too, and those an earlier
    process left open told as ended by the restart; the store's retention applied now and
    then. On exit the sessions close (so every sandbox worker stops), then the MCP servers
    and the log."""
    from server.agent.sessions import CLOSED_REMEMBERED
    from server.audit import AuditLog
    from server.mcp.manager import McpManager
    from server.recording import RunRecorder

    mcp = McpManager(mcp_servers) if mcp_servers else None
    if mcp is not None:
        mcp.approval_timeout, mcp.call_timeout = settings.approval_timeout, settings.tool_timeout
        await mcp.start()
    runtime = start_agent_runtime(settings, engine, mcp)
    runtime.observers.append(metrics.observe_agent)
    runtime.sessions.on_evict = metrics.sessions_evicted.inc
    runtime.observers.append(RunRecorder(store.agent_runs).observe)
    runtime.sessions.remember_closed(store.agent_runs.close_interrupted(CLOSED_REMEMBERED))
    runtime.sessions.on_closed = store.agent_runs.session_closed
    retention = asyncio.get_running_loop().create_task(_keep_pruning(store), name="store-retention")
    audit = AuditLog(settings.audit_log) if settings.audit_log else None
    if audit is not None:
        runtime.observers.append(audit.observe)
        if mcp is not None:
            mcp.on_decision = audit.write  # every approval decision, with who decided
        log.info("audit log: %s", audit.path)
    try:
        yield runtime
    finally:
        retention.cancel()
        runtime.close()
        if mcp is not None:
            await mcp.stop()
        if audit is not None:
            audit.close()


#: Seconds between two passes of the store's retention (it also runs at start-up).
RETENTION_INTERVAL_S = 600.0


async def _keep_pruning(store: Store) -> None:
    """Apply the store's age and size limits every ``RETENTION_INTERVAL_S``, off the event loop."""
    while True:
        await asyncio.sleep(RETENTION_INTERVAL_S)
        try:
            pruned = await asyncio.to_thread(store.retention.apply)
        except Exception:  # noqa: BLE001 - a failed pass is retried at the next
            log.exception("the store's retention pass failed")
            continue
        if pruned.by_age or pruned.by_size:
            log.info(
                "store: %d records past their age and %d over the size limit removed", pruned.by_age, pruned.by_size
            )
