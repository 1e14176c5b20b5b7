"""The JSONL audit log: one line per agent run with its request, steps and observations."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer
from tests.scripted_agent import ANSWER_AT_ONCE


def ask(url: str, content: str, **extra: object) -> dict:
    body = {"model": "scripted", "messages": [{"role": "user", "content": content}], **extra}
    response = httpx.post(url + "/v1/agent", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_agent_run_is_one_json_line(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "audit.jsonl"
    engine = ScriptedEngine()
    engine.enqueue("Let me compute.\n<execute>x = 6 * 7\nprint(x)</execute>", "<solution>42</solution>")
    engine.enqueue("<solution>still 42</solution>")
    with LiveServer(create_app(Settings(audit_log=log_path, sandbox_pool_size=0), engine)) as live:
        first = ask(live.url, "What is 6 * 7?")
        session_id = first["agent"]["session_id"]
        ask(live.url, "And now?", session_id=session_id)
        httpx.post(
            live.url + "/v1/chat/completions",
            json={"model": "scripted", "messages": [{"role": "user", "content": "plain chat is not an agent run"}]},
            timeout=30,
        )
    lines = log_path.read_text().splitlines()
    assert len(lines) == 2
    run, follow_up = (json.loads(line) for line in lines)
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600

    assert run["session_id"] == session_id and run["new_session"] is True
    assert run["messages"][0]["role"] == "system"
    assert {"role": "user", "content": "Task:\nWhat is 6 * 7?"} in run["messages"]
    assert any(m["role"] == "user" and m["content"].startswith("Observation:") for m in run["messages"])
    execute, solution = run["steps"]
    assert execute["thought"] == "Let me compute."
    assert execute["action"] == {"type": "execute", "code": "x = 6 * 7\nprint(x)", "answer": None}
    assert execute["observation"]["stdout"] == "42\n"
    assert solution["action"]["answer"] == "42" and solution["observation"] is None
    assert run["finish_reason"] == "solution" and run["final_message"] == "42" and run["turns"] == 2
    assert run["usage"]["completion_tokens"] > 0 and run["options"]["max_turns"] == 5

    assert follow_up["new_session"] is False and follow_up["session_id"] == session_id
    assert follow_up["messages"][0] == {"role": "user", "content": "And now?"}
    assert [s["index"] for s in follow_up["steps"]] == [2]
    assert follow_up["final_message"] == "still 42"


def test_off_by_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings().audit_log is None
    engine = ScriptedEngine(["<solution>1</solution>"])
    with LiveServer(create_app(Settings(sandbox_pool_size=0, **ANSWER_AT_ONCE), engine)) as live:
        ask(live.url, "One?")
    assert list(tmp_path.iterdir()) == []
