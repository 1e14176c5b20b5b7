"""A restart loses nothing acknowledged: a real ``codeact-server serve`` on a temporary store,
killed with SIGKILL during a run, then started again on the same file.

Before the kill: a completed response (the official openai client), a background agent run
that ended (its events read), and a long background response still generating. After the
restart: the response and a ``previous_response_id`` follow-up, the agent run's events
after ``Last-Event-ID`` exactly as sent before, the killed run ``failed`` with
``server_restart``, and a follow-up in the dead session told in words why it is gone.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from benchmarks.servers import free_port
from tests.conftest import embedded_model_path
from tests.live_server import wait_until_healthy

ROOT = Path(__file__).resolve().parents[3]
LONG = "Count from 1 to 3000, one number per line."


@contextmanager
def serving(store: Path, log_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEACT_")}
    argv = [sys.executable, "-m", "server.cli.main", "serve", "--model", str(embedded_model_path())]
    argv += ["--port", str(port), "--ctx-size", "2048", "--sandbox-pool-size", "0", "--store", str(store)]
    with log_path.open("a") as log:
        server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(server, url, log_path)
        yield server, url
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def agent_events(url: str, session_id: str, last_event_id: int | None = None) -> list[tuple[int, str]]:
    """The run's events as (id, data), read to the stream's end."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    events, current = [], None
    with httpx.stream("GET", f"{url}/v1/agent/sessions/{session_id}/events", headers=headers, timeout=120) as reply:
        assert reply.status_code == 200, reply.read()
        for line in reply.iter_lines():
            if line.startswith("id: "):
                current = int(line[4:])
            elif line.startswith("data: ") and line != "data: [DONE]":
                assert current is not None
                events.append((current, line[6:]))
    return events


@pytest.mark.slow
def test_kill_9_then_restart_keeps_responses_runs_and_says_what_died(tmp_path: Path) -> None:
    store = tmp_path / "records" / "store.db"
    log_path = tmp_path / "server.log"
    with serving(store, log_path) as (server, url):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        first = client.responses.create(model="default", input="Say hello.", max_output_tokens=8, temperature=0)
        assert first.status in ("completed", "incomplete")

        agent = httpx.post(
            url + "/v1/agent",
            json={
                "model": "default",
                "messages": [{"role": "user", "content": "What is 6 times 7?"}],
                "background": True,
                "max_turns": 2,
                "max_tokens": 24,
                "temperature": 0,
            },
            timeout=60,
        )
        assert agent.status_code == 202, agent.text
        session_id = agent.json()["id"]
        before = agent_events(url, session_id)  # to its end: the run is over
        assert len(before) >= 3 and [i for i, _ in before] == list(range(len(before)))

        long_run = client.responses.create(
            model="default", input=LONG, max_output_tokens=1900, temperature=0, background=True
        )
        deadline = time.monotonic() + 60
        seen = []
        with httpx.stream("GET", f"{url}/v1/responses/{long_run.id}", params={"stream": "true"}, timeout=60) as live:
            for line in live.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                if sum(e["type"] == "response.output_text.delta" for e in seen) >= 5:
                    break
                assert time.monotonic() < deadline
        assert client.responses.retrieve(long_run.id).status == "in_progress"
        server.send_signal(signal.SIGKILL)
        server.wait(10)

    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    with serving(store, log_path) as (_server, url):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        again = client.responses.retrieve(first.id)
        assert again.status == first.status and again.output_text == first.output_text
        follow_up = client.responses.create(
            model="default", input="And goodbye?", previous_response_id=first.id, max_output_tokens=8, temperature=0
        )
        assert follow_up.status in ("completed", "incomplete")
        assert follow_up.previous_response_id == first.id

        cut = 2
        after = agent_events(url, session_id, last_event_id=cut)
        assert after and after == [e for e in before if e[0] > cut]

        killed = client.responses.retrieve(long_run.id)
        assert killed.status == "failed", killed.model_dump()
        assert killed.error is not None and killed.error.code == "server_restart"
        replay = []
        with httpx.stream(
            "GET", f"{url}/v1/responses/{long_run.id}", params={"stream": "true", "starting_after": "0"}, timeout=30
        ) as again_live:
            assert again_live.status_code == 200
            replay = [json.loads(line[6:]) for line in again_live.iter_lines() if line.startswith("data: ")]
        assert [e["sequence_number"] for e in replay[: len(seen) - 1]] == [e["sequence_number"] for e in seen[1:]]

        gone = httpx.post(
            url + "/v1/agent",
            json={"model": "default", "session_id": session_id, "messages": [{"role": "user", "content": "Go on."}]},
            timeout=30,
        )
        assert gone.status_code == 404
        assert "restarted" in gone.json()["error"]["message"] and session_id in gone.json()["error"]["message"]
        chunks = [json.loads(data) for _, data in before]
        (run_id,) = [c["agent"]["run_id"] for c in chunks if (c.get("agent") or {}).get("type") == "done"]
        assert f"/v1/agent/runs/{run_id}/fork" in gone.json()["error"]["message"]  # how to bring it back
        record = httpx.get(f"{url}/v1/agent/runs/{run_id}", timeout=30)
        assert record.status_code == 200 and record.json()["session_id"] == session_id
        assert len(record.json()["steps"]) == record.json()["outcome"]["turns"]
    assert "server_restart" in log_path.read_text() or "marked failed" in log_path.read_text()
