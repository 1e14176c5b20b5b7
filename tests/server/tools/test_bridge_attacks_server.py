"""The host-call bridge under hostile code, through the real server (issue 34).

Real uvicorn, the real sandbox and the scripted model, whose code plays the attacker: it
parks the client's tool calls in many sessions, leaves its worker writing garbage while the
session idles out, calls a client tool while a Python tool is being defined, and puts lone
surrogates where the answer is built. What must hold: ``/health`` answers within a second
throughout, other sessions keep running, and no answer is a 500.
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
from tests.scripted_agent import ANSWER_AT_ONCE, MODEL, agent

CLIENT_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


def _server(engine: ScriptedEngine, **overrides: object) -> LiveServer:
    settings = Settings(
        **{"sandbox_pool_size": 1, "execution_timeout": 20, "max_sessions": 12, **ANSWER_AT_ONCE, **overrides}
    )
    return LiveServer(create_app(settings, engine))


@pytest.fixture
def server(engine: ScriptedEngine) -> Iterator[LiveServer]:
    with _server(engine) as live:
        yield live


def _post(server: LiveServer, **body: object) -> httpx.Response:
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], **body}
    return httpx.post(server.url + "/v1/agent", json=payload, timeout=60)


class HealthProbe:
    """Asks /health every 100 ms on a thread; the slowest answer it saw."""

    def __init__(self, url: str) -> None:
        self.url, self.slowest, self.failures = url + "/health", 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def _probe(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                ok = httpx.get(self.url, timeout=5).status_code == 200
            except httpx.HTTPError:
                ok = False
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.failures += not ok
            self._stop.wait(0.1)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_parked_client_calls_in_eight_sessions_leave_room_for_a_ninth(
    server: LiveServer, engine: ScriptedEngine
) -> None:
    """Before: each parked execution held a thread of the event loop's default executor (six
    on two cores), so the ninth session's ``print(6 * 7)`` never ran."""
    for _ in range(8):
        engine.enqueue("<execute>\nprint(lookup())\n</execute>")
    engine.enqueue("<execute>\nprint(6 * 7)\n</execute>", "<solution>42</solution>")
    with HealthProbe(server.url) as probe:
        for _ in range(8):
            parked = _post(server, tools=[CLIENT_TOOL])
            assert parked.status_code == 200 and parked.json()["choices"][0]["finish_reason"] == "tool_calls"
        started = time.monotonic()
        ninth = agent(server)
        took = time.monotonic() - started
    assert ninth["agent"]["steps"][0]["observation"]["stdout"] == "42\n"
    assert took < 15, f"the ninth session waited {took:.1f} s"
    assert probe.failures == 0 and probe.slowest < 1.0, (probe.failures, probe.slowest)


def test_health_answers_while_a_hostile_idle_session_is_expired(engine: ScriptedEngine) -> None:
    """The cell leaves a thread flooding the protocol pipe, then the session idles past its TTL:
    the reaper closes it off the event loop."""
    hostile = (
        "<execute>\nimport os, threading, time\nout = __codeact_call__.__self__._out\n"
        "def flood():\n    time.sleep(0.5)\n    while True:\n        os.write(out, b'\\xff' * 65536)\n"
        "threading.Thread(target=flood, daemon=True).start()\nprint('left running')\n</execute>"
    )
    engine.enqueue(hostile, "<solution>done</solution>")
    with _server(engine, session_ttl=1.0) as server, HealthProbe(server.url) as probe:
        reply = agent(server)
        assert reply["agent"]["steps"][0]["observation"]["stdout"] == "left running\n"
        deadline = time.monotonic() + 15
        while httpx.get(server.url + "/health").json()["sessions"] != 0:  # (asking for the session would keep it)
            assert time.monotonic() < deadline, "the idle session was never closed"
            time.sleep(0.2)
        time.sleep(1.0)
    assert probe.failures == 0 and probe.slowest < 1.0, (probe.failures, probe.slowest)


def test_a_tool_source_that_calls_a_client_tool_is_a_prompt_400(server: LiveServer) -> None:
    """Before: the call parked forever, the session stayed locked and the client never learnt its id."""
    python_tool = {"name": "eager", "source": "lookup()\n"}
    started = time.monotonic()
    response = _post(server, tools=[CLIENT_TOOL, python_tool])
    took = time.monotonic() - started
    assert response.status_code == 400, response.text
    assert "lookup cannot be called while a tool's source is being defined" in response.json()["error"]["message"]
    assert took < 15
    assert httpx.get(server.url + "/health").json()["sessions"] == 0  # the refused session was not kept


def test_lone_surrogates_never_turn_an_answer_into_a_500(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue(
        "<execute>\ntry:\n    __codeact_call__('no\\udfffsuch', {})\nexcept Exception as e:\n    print(e)\n"
        "raise ValueError('bad \\udc80 text')\n</execute>",
        "<solution>done</solution>",
    )
    response = _post(server)
    assert response.status_code == 200, response.text
    seen = response.json()["agent"]["steps"][0]["observation"]
    assert seen["host_calls"][0]["tool"] == "no\ufffdsuch"
    assert "ValueError: bad \ufffd text" in seen["error"]


def test_a_late_answer_resumes_a_run_whose_call_ran_out_of_wait(engine: ScriptedEngine) -> None:
    """The call fails in the code at --tool-wait-limit; the suspended run is not stranded: the
    client's late tool message resumes it (its content dropped), and it ends normally."""
    engine.enqueue(
        "<execute>\ntry:\n    print(lookup())\nexcept Exception as e:\n    print(type(e).__name__, e)\n</execute>",
        "<solution>gave up waiting</solution>",
    )
    with _server(engine, tool_wait_limit=1.0) as server:
        parked = _post(server, tools=[CLIENT_TOOL]).json()
        call = parked["choices"][0]["message"]["tool_calls"][0]
        time.sleep(2.5)  # past the wait budget: the code has moved on
        messages = [
            {"role": "user", "content": "go"},
            parked["choices"][0]["message"],
            {"role": "tool", "tool_call_id": call["id"], "content": "too late"},
        ]
        resumed = _post(server, messages=messages, tools=[CLIENT_TOOL])
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["choices"][0]["message"]["content"] == "gave up waiting"
    seen = resumed.json()["agent"]["steps"][0]["observation"]
    assert seen["stdout"] == "ToolCallError lookup did not answer within 1 s\n", seen
