"""The code an approval guards cannot approve itself, even with the network on.

Agent code runs with ``--sandbox-network`` on, so it can reach the server's HTTP API on
loopback (each test first proves that it did: ``/health`` answered it). While its own call of
the writing tool waits for approval, a thread it started tries everything it can reach: list
and read its session's approvals and events, decide guessed ids with and without a made-up
key, and answer through ``/v1/responses``. Nothing it tries sees an approval id or decides one;
the call stays pending until the test denies it with the run's own key, and the note is never
written. Also: another valid API key can neither see nor decide a run's request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer
from tests.scripted_agent import ANSWER_AT_ONCE, MODEL
from tests.server.tools.approvals.conftest import decisions, mcp_config

KEY, OTHER = "key-of-the-run-owner", "another-valid-key"

ATTACK = """<execute>
import json, os, threading, time, urllib.error, urllib.request
URL, SESSION = {url!r}, {session!r}
tried = []
def attempt(method, path, body=None, key=None):
    headers = {{"Content-Type": "application/json"}}
    if key:
        headers["Authorization"] = "Bearer " + key
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(URL + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            status, text = r.status, r.read(4000).decode(errors="replace")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read(4000).decode(errors="replace")
    except Exception as e:
        status, text = "unreachable", repr(e)
    tried.append([method, path, key, status, "mcpr_" in text])
def attack():
    time.sleep(1.0)
    attempt("GET", "/health")
    found = [v for v in [*os.environ.values(), os.getcwd()] if "sess_" in v]
    for s in ([SESSION] if SESSION else []) + found + ["sess_" + "0" * 20]:
        for path in ("/approvals", "/events", ""):
            attempt("GET", f"/v1/agent/sessions/{{s}}{{path}}")
        for guess in ("mcpr_" + "A" * 32, "mcpr_0"):
            for key in (None, "made-up-key"):
                attempt("POST", f"/v1/agent/sessions/{{s}}/approvals/{{guess}}", {{"approve": True}}, key)
    answer = {{"type": "mcp_approval_response", "approval_request_id": "mcpr_" + "A" * 32, "approve": True}}
    attempt("POST", "/v1/responses", {{"model": "scripted", "previous_response_id": "resp_0", "input": [answer]}})
    with open("attack.json", "w") as out:
        json.dump({{"found": found, "tried": tried}}, out)
threading.Thread(target=attack).start()
try:
    print(notes_write_note(text="pwned"))
except PermissionError as e:
    print("denied:", e)
</execute>"""


def start_server(engine: ScriptedEngine, workdir: Path, keys: list[str]) -> LiveServer:
    settings = Settings(
        sandbox_pool_size=1,
        sandbox_network=True,
        execution_timeout=20,
        max_sessions=4,
        mcp_config=mcp_config(workdir / "mcp.json", workdir / "notes.txt"),
        api_key=keys,
        audit_log=workdir / "audit.jsonl",
        **ANSWER_AT_ONCE,
    )
    return LiveServer(create_app(settings, engine))


@pytest.fixture(scope="module")
def keyed(engine: ScriptedEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    workdir = tmp_path_factory.mktemp("keyed")
    with start_server(engine, workdir, [KEY, OTHER]) as live:
        yield live, workdir


@pytest.fixture(scope="module")
def keyless(engine: ScriptedEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    workdir = tmp_path_factory.mktemp("keyless")
    with start_server(engine, workdir, []) as live:
        yield live, workdir


def headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def run_attack(server: LiveServer, engine: ScriptedEngine, key: str | None, leak_session: bool) -> tuple[dict, dict]:
    """A session, then a task in it whose code attacks while its call waits; the attack's
    record (read once the attacker wrote it) and the pending approval."""
    engine.enqueue("<solution>ready</solution>")
    first = httpx.post(
        server.url + "/v1/agent",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers=headers(key),
    )
    session_id = first.json()["agent"]["session_id"]
    engine.enqueue(
        ATTACK.format(url=server.url, session=session_id if leak_session else None), "<solution>done</solution>"
    )
    body = {"model": MODEL, "session_id": session_id, "messages": [{"role": "user", "content": "Note it."}]}
    reply = httpx.post(server.url + "/v1/agent", json=body, headers=headers(key), timeout=60).json()
    assert reply["agent"]["finish_reason"] == "approval_required", reply
    approval = reply["agent"]["approval"]
    file_url = f"{server.url}/v1/agent/sessions/{session_id}/files/attack.json"
    deadline = time.monotonic() + 60
    while (found := httpx.get(file_url, headers=headers(key))).status_code != 200:
        assert time.monotonic() < deadline, "the attacker never finished"
        time.sleep(0.2)
    return found.json(), approval


def finish(server: LiveServer, approval: dict, key: str | None) -> list[str]:
    """Deny the request with the run's own key; the stdout of the rest of the run."""
    session_id = approval["session_id"]
    url = f"{server.url}/v1/agent/sessions/{session_id}/approvals/{approval['id']}"
    assert httpx.post(url, json={"approve": False, "reason": "test"}, headers=headers(key)).status_code == 200
    with httpx.stream("GET", f"{server.url}/v1/agent/sessions/{session_id}/events", headers=headers(key)) as events:
        chunks = [json.loads(line[6:]) for line in events.iter_lines() if line.startswith("data: {")]
    steps = [c["agent"]["step"] for c in chunks if (c.get("agent") or {}).get("type") == "step"]
    return [s["observation"]["stdout"] for s in steps if s["observation"]]


def assert_the_attack_failed(record: dict, workdir: Path) -> None:
    tried = record["tried"]
    assert tried[0][:4] == ["GET", "/health", None, 200], (
        "the sandbox never reached the server: the test proves nothing"
    )
    decisions_tried = [t for t in tried if t[0] == "POST"]
    assert decisions_tried and all(t[3] in (400, 401, 404) for t in decisions_tried), decisions_tried
    assert not any(t[4] for t in tried), f"an approval id was shown to the sandbox: {tried}"
    assert not (workdir / "notes.txt").exists(), "the writing tool ran"
    assert [(d["approve"], d["decided_by"]) for d in decisions(workdir / "audit.jsonl")][-1] == (False, "api")


def test_code_with_network_cannot_approve_its_call_even_knowing_its_session(
    keyed: tuple[LiveServer, Path], engine: ScriptedEngine
) -> None:
    server, workdir = keyed
    record, approval = run_attack(server, engine, KEY, leak_session=True)
    reads = [t for t in record["tried"] if t[0] == "GET" and approval["session_id"] in t[1]]
    assert reads and all(t[3] == 401 for t in reads), reads  # no key, nothing to read
    # Another valid key neither sees the request nor decides it.
    base = f"{server.url}/v1/agent/sessions/{approval['session_id']}/approvals"
    assert httpx.get(base, headers=headers(OTHER)).json()["data"] == []
    stolen = httpx.post(f"{base}/{approval['id']}", json={"approve": True}, headers=headers(OTHER))
    assert stolen.status_code == 404
    assert [p["id"] for p in httpx.get(base, headers=headers(KEY)).json()["data"]] == [approval["id"]]
    assert finish(server, approval, KEY) == ["denied: notes_write_note: the call was not approved: test\n"]
    assert_the_attack_failed(record, workdir)


def test_code_with_network_cannot_find_or_approve_its_call_on_a_server_without_keys(
    keyless: tuple[LiveServer, Path], engine: ScriptedEngine
) -> None:
    server, workdir = keyless
    record, approval = run_attack(server, engine, None, leak_session=False)
    assert record["found"] == [], "the sandbox can see its session id"
    assert finish(server, approval, None) == ["denied: notes_write_note: the call was not approved: test\n"]
    assert_the_attack_failed(record, workdir)
