"""A busy server never locks a plain client out (issue 36, item 3), over real HTTP.

``--max-sessions 2``: one-shot runs (no ``session_id``, nothing deleted, as any OpenAI SDK
loop does) each leave an idle session, and the least recently used idle one is closed to make
room for the next. Only while both sessions run a request is a third refused (429 with
Retry-After), and it succeeds once they are done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer
from tests.scripted_agent import ANSWER_AT_ONCE, MODEL

SLOW = "<execute>\nimport time\ntime.sleep(3)\nprint('slept')\n</execute>"


def _turn(prompt: str) -> str:
    last_user = prompt.rsplit("<|im_start|>user", 1)[-1]
    if "slow" in last_user:
        return SLOW
    return "<solution>ok</solution>"


@pytest.fixture
def server() -> Iterator[LiveServer]:
    settings = Settings(sandbox_pool_size=1, max_sessions=2, execution_timeout=20, **ANSWER_AT_ONCE)
    with LiveServer(create_app(settings, ScriptedEngine(responder=_turn))) as live:
        yield live


def _run(server: LiveServer, content: str) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
    return httpx.post(server.url + "/v1/agent", json=body, timeout=60)


def test_five_one_shot_runs_on_two_sessions_all_succeed(server: LiveServer) -> None:
    ids = []
    for n in range(5):
        reply = _run(server, f"question {n}")
        assert reply.status_code == 200, reply.text
        ids.append(reply.json()["agent"]["session_id"])
    assert len(set(ids)) == 5
    first = httpx.get(f"{server.url}/v1/agent/sessions/{ids[0]}")
    assert first.status_code == 404
    assert (
        "closed to make room" in first.json()["error"]["message"]
        and "at most 2 sessions" in first.json()["error"]["message"]
    )
    assert httpx.get(f"{server.url}/v1/agent/sessions/{ids[-1]}").status_code == 200


def test_a_third_is_refused_only_while_both_sessions_run(server: LiveServer) -> None:
    replies: list[httpx.Response] = []
    running = [threading.Thread(target=lambda: replies.append(_run(server, "slow"))) for _ in range(2)]
    for thread in running:
        thread.start()
    deadline = time.monotonic() + 10
    while httpx.get(server.url + "/health").json()["sessions"] < 2:  # both sessions exist and run
        assert time.monotonic() < deadline
        time.sleep(0.05)
    third = _run(server, "meanwhile")
    assert third.status_code == 429 and third.headers["retry-after"], third.text
    assert third.json()["error"]["code"] == "too_many_sessions"
    for thread in running:
        thread.join(30)
    assert [r.status_code for r in replies] == [200, 200]
    assert _run(server, "now").status_code == 200  # both idle now: one makes room
