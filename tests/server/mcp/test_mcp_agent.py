"""MCP servers' tools as Python functions in the sandbox, end to end over real HTTP.

Real parts throughout: the server under test is real uvicorn with the real sandbox; its MCP
servers are real ones written with the ``mcp`` package (``demo_mcp_server.py``): one over
stdio (a child process the MCP client starts), one over Streamable HTTP on loopback, and one
whose command does not exist. The scripted model writes the code, so each test knows exactly
which calls the sandbox makes.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer
from tests.scripted_agent import ANSWER_AT_ONCE, MODEL, agent
from tests.server.mcp import demo_mcp_server

DEMO = Path(demo_mcp_server.__file__)
TOOL_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def web_mcp() -> Iterator[LiveServer]:
    """The demo server over Streamable HTTP on a loopback port."""
    with LiveServer(demo_mcp_server.app()) as live:  # type: ignore[arg-type]
        yield live


@pytest.fixture(scope="module")
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture(scope="module")
def server(
    engine: ScriptedEngine, web_mcp: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    config = tmp_path_factory.mktemp("mcp") / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    # Its tools declare no readOnlyHint: without this they would all ask first.
                    "demo": {
                        "command": sys.executable,
                        "args": [str(DEMO)],
                        "env": {"DEMO_FLAG": "1"},
                        "require_approval": "never",
                    },
                    "web": {"url": web_mcp.url + "/mcp", "headers": {"X-Test": "yes"}, "require_approval": "never"},
                    "broken": {"command": str(config.parent / "no-such-mcp-server")},
                }
            }
        )
    )
    settings = Settings(
        sandbox_pool_size=1,
        execution_timeout=20,
        max_sessions=16,
        mcp_config=config,
        tool_timeout=TOOL_TIMEOUT_S,
        **ANSWER_AT_ONCE,
    )
    with LiveServer(create_app(settings, engine)) as live:
        yield live


@pytest.fixture(autouse=True)
def _script_consumed(engine: ScriptedEngine) -> Iterator[None]:
    engine.requests.clear()
    yield
    left = list(engine._turns)  # noqa: SLF001
    engine._turns.clear()  # noqa: SLF001 - a failed test must not feed the next one
    assert not left, f"the test left scripted turns unused: {left}"


def observation(reply: dict, step: int = 0) -> dict:
    return reply["agent"]["steps"][step]["observation"]


def test_a_loop_of_calls_in_one_action_over_stdio_and_streamable_http(
    server: LiveServer, engine: ScriptedEngine
) -> None:
    engine.enqueue(
        "<execute>\nfor city in ['Oslo', 'Lima']:\n    w = demo_weather(city)\n    print(w['city'], w['temp_c'])\n"
        "print(demo_add(2, b=40), demo_add(a=1), web_shout('hi'), demo_weather('Rome', units='imperial')['temp_c'])\n"
        "</execute>",
        "<solution>done</solution>",
    )
    reply = agent(server, "Weather?")
    seen = observation(reply)
    assert seen["error"] is None, seen
    assert seen["stdout"] == "Oslo 4.0\nLima 4.0\n42 2 HI 39.2\n"
    calls = seen["host_calls"]
    assert [c["tool"] for c in calls] == [
        "demo_weather",
        "demo_weather",
        "demo_add",
        "demo_add",
        "web_shout",
        "demo_weather",
    ]
    assert calls[2]["arguments"] == {"a": 2, "b": 40} and calls[3]["arguments"] == {"a": 1}
    assert all(c["error"] is None and c["duration_s"] > 0 for c in calls)
    prompt = engine.requests[0].prompt
    assert "Tool function available (already imported in <execute> environment):" in prompt
    assert "] demo_weather(city: str, units: str = None)\nCurrent weather of a city." in prompt
    assert "] web_shout(text: str)\nThe text in capitals.\n\nArgs:\n    text: what to shout" in prompt
    assert "broken_" not in prompt
    metrics = httpx.get(server.url + "/metrics").text
    assert 'codeact_host_calls_total{outcome="ok"} 6.0' in metrics


def test_a_tool_error_raises_in_the_code(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue(
        "<execute>\ntry:\n    demo_refuse('no quota')\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
        "demo_refuse(reason='twice')\n</execute>",
        "<solution>x</solution>",
    )
    seen = observation(agent(server))
    # The message is the MCP server's own text (this SDK prefixes the tool's name).
    assert seen["stdout"] == "ToolCallError Error executing tool refuse: refused: no quota\n"
    assert seen["error"].endswith("ToolCallError: Error executing tool refuse: refused: twice\n")
    assert [c["error"] for c in seen["host_calls"]] == [
        "Error executing tool refuse: refused: no quota",
        "Error executing tool refuse: refused: twice",
    ]


def test_a_slow_tool_times_out_and_the_server_keeps_serving(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue(
        "<execute>\ntry:\n    demo_slow(10)\nexcept Exception as e:\n    print(e)\nprint(demo_add(1))\n</execute>",
        "<solution>x</solution>",
    )
    seen = observation(agent(server))
    assert seen["stdout"] == f"demo_slow did not answer within {TOOL_TIMEOUT_S:g} s\n2\n"
    slow = seen["host_calls"][0]
    assert TOOL_TIMEOUT_S <= slow["duration_s"] < TOOL_TIMEOUT_S + 3


def test_a_request_narrows_the_servers(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>\nprint(web_add(1, 1))\ndemo_add(1)\n</execute>", "<solution>x</solution>")
    seen = observation(agent(server, mcp_servers=["web"]))
    assert seen["stdout"] == "2\n" and "NameError: name 'demo_add' is not defined" in seen["error"]
    assert "demo_" not in engine.requests[0].prompt
    engine.enqueue("<solution>x</solution>")
    assert "Tool function available" not in agent(server, mcp_servers=[])["agent"]["steps"][0]["thought"] + (
        engine.requests[-1].prompt
    )
    refused = httpx.post(
        server.url + "/v1/agent",
        json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "mcp_servers": ["web", "nope"]},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "mcp_servers"
    assert "no MCP server named nope; configured: demo, web, broken" in refused.json()["error"]["message"]


def test_a_client_tool_named_like_an_mcp_tool_is_refused_not_shadowed(server: LiveServer) -> None:
    tool = {"type": "function", "function": {"name": "demo_add", "parameters": {"type": "object"}}}
    refused = httpx.post(
        server.url + "/v1/agent",
        json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "tools": [tool]},
        timeout=60,
    )
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == "tools"
    assert "demo_add would be both the tool of MCP server 'demo' and the client's function tool" in error["message"]


def test_tools_listing_and_health(server: LiveServer) -> None:
    listing = httpx.get(server.url + "/v1/mcp/tools").json()
    functions = {t["function"]: t for t in listing["data"]}
    assert {"demo_weather", "demo_add", "demo_die", "web_weather", "web_shout"} <= set(functions)
    add = functions["demo_add"]
    assert (add["server"], add["name"], add["signature"]) == ("demo", "add", "demo_add(a: int, b: int = None)")
    assert add["input_schema"]["required"] == ["a"]
    health = httpx.get(server.url + "/health").json()["mcp_servers"]
    assert health["demo"]["state"] == health["web"]["state"] == "running"
    assert health["broken"]["state"] in {"failed", "restarting"}
    assert "no-such-mcp-server" in health["broken"]["error"]
    assert listing["servers"]["broken"]["tools"] == 0


def _wait_running(server: LiveServer, name: str, restarts: int, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        state = httpx.get(server.url + "/health").json()["mcp_servers"][name]
        if state["state"] == "running" and state["restarts"] >= restarts:
            return
        time.sleep(0.1)
    raise AssertionError(f"MCP server {name} did not come back: {state}")


def test_a_server_that_dies_mid_session_is_restarted(server: LiveServer, engine: ScriptedEngine) -> None:
    before = httpx.get(server.url + "/health").json()["mcp_servers"]["demo"]["restarts"]
    engine.enqueue(
        "<execute>\nfirst = demo_pid()\ntry:\n    demo_die()\n"
        "except Exception as e:\n    print('died:', e)\n</execute>",
        "<solution>x</solution>",
    )
    reply = agent(server)
    seen = observation(reply)
    assert seen["stdout"].startswith("died: demo_die: MCP error"), seen
    _wait_running(server, "demo", before + 1)
    engine.enqueue("<execute>\nprint(demo_pid() != first, demo_add(1))\n</execute>", "<solution>x</solution>")
    again = httpx.post(
        server.url + "/v1/agent",
        json={
            "model": MODEL,
            "session_id": reply["agent"]["session_id"],
            "messages": [{"role": "user", "content": "again"}],
        },
        timeout=60,
    ).json()
    assert observation(again)["stdout"] == "True 2\n"


def test_a_lone_surrogate_never_reaches_the_shared_connection(server: LiveServer, engine: ScriptedEngine) -> None:
    """Issue 34: one session's string with a lone surrogate crashed the stdio connection that
    every session shares. The stub refuses it, and a forged frame's is replaced on decoding."""
    before = httpx.get(server.url + "/health").json()["mcp_servers"]["demo"]["restarts"]
    forged = '{"op": "call", "id": 7, "tool": "demo_shout", "arguments": {"text": "a\\ud800b"}}'
    engine.enqueue(
        "<execute>\nimport os, json, struct\nstub = __codeact_call__.__self__\n"
        f"body = {forged!r}.encode()\n"
        "os.write(stub._out, struct.pack('>I', len(body)) + body)\n"
        "size = struct.unpack('>I', os.read(stub._in, 4))[0]\nprint(json.loads(os.read(stub._in, size)))\n"
        "try:\n    demo_shout('a\\ud800b')\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
        "print(demo_add(1))\n</execute>",
        "<solution>x</solution>",
    )
    seen = observation(agent(server))
    forged_reply, refused, added = seen["stdout"].splitlines()
    assert "'ok': True" in forged_reply and "\ufffd" in forged_reply, forged_reply
    assert refused == "ValueError arguments of demo_shout hold text that is not valid Unicode (a lone surrogate)"
    assert added == "2"
    engine.enqueue("<execute>\nprint(demo_add(2))\n</execute>", "<solution>x</solution>")
    assert observation(agent(server))["stdout"] == "3\n"  # another session, the same connection
    assert httpx.get(server.url + "/health").json()["mcp_servers"]["demo"]["restarts"] == before


def test_the_restart_back_off_starts_over_after_a_good_connection(server: LiveServer, engine: ScriptedEngine) -> None:
    """Issue 34: the delay doubled across crashes and never reset, so a server that died now and
    then came back later each time. Each crash here follows a connection that ran."""
    restarts = httpx.get(server.url + "/health").json()["mcp_servers"]["demo"]["restarts"]
    for _ in range(4):
        engine.enqueue(
            "<execute>\ntry:\n    demo_die()\nexcept Exception:\n    pass\n</execute>", "<solution>x</solution>"
        )
        agent(server)
        restarts += 1
        started = time.monotonic()
        _wait_running(server, "demo", restarts)
        back = time.monotonic() - started
        assert back < 3.5, f"back after {back:.1f} s: the back-off grew across good connections"
