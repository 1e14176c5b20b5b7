"""The default mode: start the real server in this process and run the tasks over HTTP.

Nothing is short-circuited: the app comes from ``server.api.app.create_app``, runs under real
uvicorn on a loopback port (``server.api.loopback``), and every task goes through
``run_against_server`` exactly as it would against a server started by hand. So a score
measured here includes the real agent loop, the real sandbox (tool sources executed in a
worker process), the real observation formatting and the real JSON responses.

Only the engine is chosen here:

* ``oracle=True``: ``ScriptedEngine(responder=OracleResponder(tasks))``, a perfect agent
  that must score every task; it checks the harness and the server together.
* otherwise a real llama.cpp engine loaded the way ``codeact-server serve`` loads it
  (``server.composition.build_engine``): ``model`` is a catalog name, a GGUF path, or ``auto``
  (the CodeActAgent 7B when pulled, else the embedded SmolLM2-135M).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from models.engine.api import Engine
from server.api.app import create_app
from server.api.loopback import LoopbackServer
from server.settings import Settings

from .harness import EXECUTION_TIMEOUT_S, MAX_TURNS, TaskRun, run_against_server

ORACLE_MODEL_ID = "oracle"


def server_settings(
    model: str = "auto", ctx_size: int | None = None, max_turns: int = MAX_TURNS, threads: int | None = None
) -> Settings:
    """Settings for a benchmark server: one warm sandbox (tasks run one at a time).

    ``threads`` matters on a shared CPU: two spinning llama.cpp threads on two busy cores
    stall each other (measured here: ~3 tok/s with 2 threads vs ~20-40 with 1).
    """
    return Settings(
        model=model,
        ctx_size=ctx_size,
        threads=threads,
        max_turns=max_turns,
        execution_timeout=EXECUTION_TIMEOUT_S,
        sandbox_pool_size=1,
        log_level="warning",
    )


def build_engine(settings: Settings, *, oracle: bool, tasks: Sequence[dict[str, Any]]) -> Engine:
    """The scripted oracle, or the configured GGUF on llama.cpp (imported only then)."""
    if oracle:
        from models.engine.scripted import ScriptedEngine

        from .oracle_model import OracleResponder

        return ScriptedEngine(responder=OracleResponder(tasks), model_id=ORACLE_MODEL_ID)
    from server.composition import build_engine as model_engine

    return model_engine(settings)


@contextmanager
def served(settings: Settings, engine: Engine) -> Iterator[str]:
    """The app around ``engine`` on a loopback port; yields its base URL; closes the engine.

    Once the server started, its lifespan closes the engine; if it never started, we do.
    """
    server = LoopbackServer(create_app(settings, engine), log_level=settings.log_level)
    try:
        server.__enter__()
    except BaseException:
        engine.close()
        raise
    try:
        yield server.url
    finally:
        server.__exit__(None, None, None)


def run_in_process(
    tasks: Sequence[dict[str, Any]],
    *,
    model: str = "auto",
    oracle: bool = False,
    max_turns: int = MAX_TURNS,
    ctx_size: int | None = None,
    threads: int | None = None,
    max_tokens: int | None = None,
    timeout_s: float = 900.0,
    on_result: Callable[[TaskRun], None] | None = None,
    on_engine: Callable[[Engine], None] | None = None,
) -> list[TaskRun]:
    """Load the engine, serve it, run ``tasks`` against it over HTTP, shut everything down.

    ``on_engine`` sees the loaded engine before the first task (the CLI records which
    model file ``auto`` chose).
    """
    settings = server_settings(model, ctx_size, max_turns, threads)
    engine = build_engine(settings, oracle=oracle, tasks=tasks)
    if on_engine is not None:
        on_engine(engine)
    with served(settings, engine) as url:
        return run_against_server(
            url,
            tasks,
            model=engine.info.model_id,
            timeout_s=timeout_s,
            max_turns=max_turns,
            max_tokens=max_tokens,
            on_result=on_result,
        )
