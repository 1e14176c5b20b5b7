"""What the scripted-model agent tests share: a live server around a ScriptedEngine and a
one-call ``POST /v1/agent`` helper (tests/server/agent/conftest.py makes the fixtures from
``scripted_server``; other folders' modules use it directly)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

MODEL = "scripted"
#: Settings for scripts that answer on their first turn, before any code ran, as a test of
#: something else: ``unrun_answer: resample`` would leave that answer out. Its own tests
#: ask for it.
ANSWER_AT_ONCE: dict[str, object] = {"agent_unrun_answer": "off"}


@contextmanager
def scripted_server(engine: ScriptedEngine) -> Iterator[LiveServer]:
    """Real uvicorn and sandbox around the scripted model: one warm worker, 3 sessions,
    first-turn answers taken (``ANSWER_AT_ONCE``)."""
    settings = Settings(sandbox_pool_size=1, execution_timeout=20, max_sessions=3, **ANSWER_AT_ONCE)
    with LiveServer(create_app(settings, engine)) as live:
        yield live


def agent(server: LiveServer, content: str = "What is 6 * 7?", **extra: object) -> dict:
    """One agent request that must succeed; its JSON answer."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}
    response = httpx.post(server.url + "/v1/agent", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()
