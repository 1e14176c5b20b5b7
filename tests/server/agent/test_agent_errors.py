"""The agent's refusals: its own error types in ``server.agent``, their HTTP shape in ``server.api``.

Over real HTTP (uvicorn, the scripted model, the real sandbox) each refusal must keep the
status code and OpenAI error body it had when the agent raised HTTP errors itself (that
the agent imports no web framework is tests/test_layout.py's check).
"""

from __future__ import annotations

import json

import httpx

from models.engine.scripted import ScriptedEngine
from server.agent import errors as agent_errors
from server.api.errors import agent_error_to_api
from tests.live_server import LiveServer
from tests.scripted_agent import MODEL, agent


def _post(server: LiveServer, content: str | None = "hi", **extra: object) -> httpx.Response:
    messages = [] if content is None else [{"role": "user", "content": content}]
    return httpx.post(server.url + "/v1/agent", json={"model": MODEL, "messages": messages, **extra}, timeout=60)


def _error(
    message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, object]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def test_unknown_session_is_a_404_not_found(server: LiveServer) -> None:
    response = _post(server, session_id="sess_nope")
    assert response.status_code == 404
    assert response.json() == _error(
        "no agent session 'sess_nope' (it may have expired or been deleted)", code="not_found"
    )
    deleted = httpx.delete(server.url + "/v1/agent/sessions/sess_gone")
    assert deleted.status_code == 404
    assert deleted.json() == _error("no agent session 'sess_gone'", code="not_found")


def test_a_busy_session_is_a_409(server: LiveServer, engine: ScriptedEngine) -> None:
    # The first run holds its session while its code sleeps.
    engine.enqueue("<execute>\nimport time\ntime.sleep(4)\n</execute>", "<solution>1</solution>")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "slow"}], "stream": True}
    with httpx.stream("POST", server.url + "/v1/agent", json=body, timeout=60) as first:
        lines = first.iter_lines()  # kept: a dropped iterator closes the stream, which cancels the run
        line = next(line for line in lines if line.startswith("data: "))
        session_id = json.loads(line[len("data: ") :])["agent"]["session_id"]
        second = _post(server, "meanwhile", session_id=session_id)
    assert second.status_code == 409, second.text
    assert second.json() == _error(
        f"session {session_id} is already running a request; wait for it to finish",
        param="session_id",
        code="session_busy",
    )


CLIENT_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


def test_all_sessions_in_use_is_a_429_with_retry_after(server: LiveServer, engine: ScriptedEngine) -> None:
    """In use: each of the 3 sessions (scripted_server's cap) waits for its client's tool result,
    so none is idle and none may be closed to make room."""
    for _ in range(3):
        engine.enqueue("<execute>\nprint(lookup())\n</execute>")
        assert _post(server, "look it up", tools=[CLIENT_TOOL]).json()["choices"][0]["finish_reason"] == "tool_calls"
    over = _post(server, "one more")
    assert over.status_code == 429 and over.headers["retry-after"] == "5"
    assert over.json() == _error(
        "all 3 agent sessions are running a request or waiting for tool results; retry when one ends",
        type="rate_limit_error",
        code="too_many_sessions",
    )


def test_a_tool_that_fails_to_define_is_a_400_on_tools(server: LiveServer) -> None:
    response = _post(server, tools=[{"name": "bad", "source": "def bad(:\n"}])
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["param"] == "tools" and body["code"] is None and body["type"] == "invalid_request_error"
    assert body["message"].startswith("tool 'bad': its source failed in the sandbox: SyntaxError")


def test_no_new_user_message_is_a_400_on_messages(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<solution>ok</solution>")
    session_id = agent(server)["agent"]["session_id"]
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]
    response = httpx.post(
        server.url + "/v1/agent", timeout=60, json={"model": MODEL, "messages": history, "session_id": session_id}
    )
    assert response.status_code == 400
    assert response.json() == _error("the request has no new user message for the agent", param="messages")
    # The refused request left the session free and unchanged: it can go on.
    engine.enqueue("<solution>again</solution>")
    assert agent(server, "and now?", session_id=session_id)["choices"][0]["message"]["content"] == "again"


def test_every_agent_error_has_its_own_status() -> None:
    """A new AgentError subclass needs a mapping in server.api.errors (500 means none)."""
    samples = {
        agent_errors.AgentRequestError: agent_errors.AgentRequestError("bad", param="tools"),
        agent_errors.SessionNotFound: agent_errors.SessionNotFound("s", "no session"),
        agent_errors.SessionBusy: agent_errors.SessionBusy("s"),
        agent_errors.TooManySessions: agent_errors.TooManySessions(2),
    }
    assert set(samples) == set(agent_errors.AgentError.__subclasses__())
    statuses = {cls: agent_error_to_api(exc).status for cls, exc in samples.items()}
    assert statuses == {
        agent_errors.AgentRequestError: 400,
        agent_errors.SessionNotFound: 404,
        agent_errors.SessionBusy: 409,
        agent_errors.TooManySessions: 429,
    }
