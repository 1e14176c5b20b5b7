"""Approvals on ``/v1/agent``: a plain request (``finish_reason: "approval_required"``, the rest
read from the session's event stream), a streamed one and a background one (an
``approval_request`` event, then the run goes on), each decided with ``POST
/v1/agent/sessions/{id}/approvals/{approval_id}``; a timeout and a cancel deny. Real uvicorn,
sandbox and MCP server (``notes_mcp_server.py``); the scripted model writes the code."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from openai import OpenAI

from models.engine.scripted import ScriptedEngine
from tests.live_server import LiveServer
from tests.scripted_agent import MODEL
from tests.server.tools.approvals.conftest import APPROVAL_TIMEOUT_S, WRITE_CODE, decisions

TASK = [{"role": "user", "content": "Note hello."}]


def agent_events(response: httpx.Response) -> Iterator[dict]:
    """The ``agent`` field of each chunk of an SSE answer, until ``[DONE]``."""
    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        data = line.removeprefix("data: ")
        if data == "[DONE]":
            return
        chunk = json.loads(data)
        if chunk.get("agent") is not None:
            yield chunk["agent"]


def decide(server: LiveServer, session_id: str, approval_id: str, approve: bool, reason: str | None = None) -> dict:
    url = f"{server.url}/v1/agent/sessions/{session_id}/approvals/{approval_id}"
    response = httpx.post(url, json={"approve": approve, "reason": reason}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def rest_of_run(server: LiveServer, session_id: str) -> list[dict]:
    """The session's background events, to the end of the run."""
    with httpx.stream("GET", f"{server.url}/v1/agent/sessions/{session_id}/events", timeout=60) as response:
        assert response.status_code == 200, response.read()
        return list(agent_events(response))


def stdout_of_steps(events: list[dict]) -> list[str]:
    return [e["step"]["observation"]["stdout"] for e in events if e["type"] == "step" and e["step"]["observation"]]


def test_a_plain_request_answers_approval_required_and_the_decision_resumes_it(
    server: LiveServer, engine: ScriptedEngine, notes: Path, audit: Path
) -> None:
    engine.enqueue(WRITE_CODE, "<solution>done</solution>")
    with OpenAI(base_url=server.url + "/v1/agent", api_key="unused", max_retries=0) as agent:
        reply = agent.chat.completions.create(model=MODEL, messages=TASK)  # type: ignore[arg-type]
    assert reply.choices[0].finish_reason == "approval_required"
    run = reply.model_extra["agent"]  # type: ignore[index]
    approval = run["approval"]
    assert (run["finish_reason"], approval["server"], approval["tool"]) == ("approval_required", "notes", "write_note")
    assert approval["arguments"] == {"text": "hello"} and approval["function"] == "notes_write_note"
    assert not notes.exists()
    listed = httpx.get(server.url + "/v1/mcp/tools").json()["data"]
    assert {(t["name"], t["read_only"], t["requires_approval"]) for t in listed} == {
        ("read_notes", True, False),
        ("write_note", False, True),
    }
    pending = httpx.get(f"{server.url}/v1/agent/sessions/{run['session_id']}/approvals").json()["data"]
    assert [p["id"] for p in pending] == [approval["id"]]

    decided = decide(server, run["session_id"], approval["id"], True)
    assert decided["status"] == "approved" and decided["events_url"] == run["events_url"]
    events = rest_of_run(server, run["session_id"])
    assert stdout_of_steps(events) == ["wrote noted: hello 42 []\n"]
    assert events[-1]["type"] == "done" and events[-1]["final_message"] == "done"
    assert notes.read_text() == "hello\n"
    assert decisions(audit)[-1]["approval_id"] == approval["id"]
    # Decided: the id decides nothing any more.
    again = httpx.post(f"{server.url}{run['approval_url']}", json={"approve": True})
    assert again.status_code == 404


def test_a_streamed_run_shows_the_request_and_goes_on_after_a_denial(
    server: LiveServer, engine: ScriptedEngine, notes: Path
) -> None:
    engine.enqueue(WRITE_CODE, "<solution>I may not write it.</solution>")
    body = {"model": MODEL, "messages": TASK, "stream": True}
    seen: list[dict] = []
    with httpx.stream("POST", server.url + "/v1/agent", json=body, timeout=60) as response:
        assert response.status_code == 200
        for event in agent_events(response):
            seen.append(event)
            if event["type"] == "approval_request":
                assert (event["server"], event["tool"], event["arguments"]) == (
                    "notes",
                    "write_note",
                    {"text": "hello"},
                )
                decide(server, event["session_id"], event["id"], False, "no writing")
    kinds = [e["type"] for e in seen]
    assert kinds.count("approval_request") == 1 and kinds[-1] == "done"
    assert stdout_of_steps(seen) == ["denied: notes_write_note: the call was not approved: no writing\n"]
    assert seen[-1]["final_message"] == "I may not write it."
    assert not notes.exists()


def test_a_background_run_asks_through_its_event_stream(
    server: LiveServer, engine: ScriptedEngine, notes: Path
) -> None:
    engine.enqueue(WRITE_CODE, "<solution>done</solution>")
    started = httpx.post(server.url + "/v1/agent", json={"model": MODEL, "messages": TASK, "background": True})
    assert started.status_code == 202, started.text
    session_id = started.json()["id"]
    with httpx.stream("GET", server.url + started.json()["events_url"], timeout=60) as response:
        seen = []
        for event in agent_events(response):
            seen.append(event)
            if event["type"] == "approval_request":
                decide(server, session_id, event["id"], True)
    assert stdout_of_steps(seen) == ["wrote noted: hello 42 []\n"] and seen[-1]["type"] == "done"
    assert notes.read_text() == "hello\n"


def test_no_decision_in_time_denies_and_the_plain_run_goes_on(
    server: LiveServer, engine: ScriptedEngine, notes: Path, audit: Path
) -> None:
    engine.enqueue(WRITE_CODE, "<solution>timed out</solution>")
    reply = httpx.post(server.url + "/v1/agent", json={"model": MODEL, "messages": TASK}, timeout=60).json()
    run = reply["agent"]
    assert run["finish_reason"] == "approval_required"
    time.sleep(APPROVAL_TIMEOUT_S)
    events = rest_of_run(server, run["session_id"])
    reason = f"no decision within {APPROVAL_TIMEOUT_S:g} s"
    assert stdout_of_steps(events) == [f"denied: notes_write_note: the call was not approved: {reason}\n"]
    assert events[-1]["final_message"] == "timed out"
    assert decisions(audit)[-1]["decided_by"] == "timeout" and not notes.exists()


def test_a_cancelled_run_denies_its_pending_request(
    server: LiveServer, engine: ScriptedEngine, notes: Path, audit: Path
) -> None:
    engine.enqueue(WRITE_CODE)
    started = httpx.post(server.url + "/v1/agent", json={"model": MODEL, "messages": TASK, "background": True})
    session_id = started.json()["id"]
    with httpx.stream("GET", server.url + started.json()["events_url"], timeout=60) as response:
        for event in agent_events(response):
            if event["type"] == "approval_request":
                approval_id = event["id"]
                assert httpx.post(f"{server.url}/v1/agent/sessions/{session_id}/cancel").status_code == 200
    deadline = time.monotonic() + 15
    while not (decided := [d for d in decisions(audit) if d["approval_id"] == approval_id]):
        assert time.monotonic() < deadline, "the cancelled run's request is still pending"
        time.sleep(0.1)
    assert [(d["approve"], d["decided_by"]) for d in decided] == [(False, "cancelled")]
    late = httpx.post(f"{server.url}/v1/agent/sessions/{session_id}/approvals/{approval_id}", json={"approve": True})
    assert late.status_code == 404 and not notes.exists()


def test_sampled_runs_deny_what_would_ask(server: LiveServer, engine: ScriptedEngine, notes: Path) -> None:
    """k runs would ask k times, and approving them all would write k times."""
    engine.enqueue(WRITE_CODE, WRITE_CODE, "<solution>no</solution>", "<solution>no</solution>")
    body = {"model": MODEL, "messages": TASK, "samples": 2}
    reply = httpx.post(server.url + "/v1/agent", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    samples = reply.json()["agent"]["samples"]
    outputs = [s["steps"][0]["observation"]["stdout"] for s in samples]
    why = "calls that need approval are not made in sampled runs (samples above 1)"
    assert outputs == [f"denied: notes_write_note: the call was not approved: {why}\n"] * 2
    assert not notes.exists()
