"""``/v1/agent`` with ``background: true``: the run goes on without its connection; its events
are numbered and resumed with ``Last-Event-ID`` (or ``?after=N``); cancel stops it.

Real uvicorn, httpx, the embedded SmolLM2 on llama.cpp and a real sandbox worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def server(real_engine) -> Iterator[LiveServer]:
    settings = Settings(sandbox_pool_size=1, execution_timeout=20, background_max_running=1)
    with LiveServer(create_app(settings, real_engine, close_engine=False)) as live:
        yield live


def events(response: httpx.Response, limit: int | None = None) -> list[tuple[int | None, dict | str]]:
    """(id, data) of each event, ``[DONE]`` as a string; stops after ``limit`` events."""
    out: list[tuple[int | None, dict | str]] = []
    event_id = None
    for line in response.iter_lines():
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            data = line[6:]
            out.append((event_id, data if data == "[DONE]" else json.loads(data)))
            event_id = None
            if limit is not None and len(out) == limit:
                break
    return out


def start(server: LiveServer, **extra: object) -> dict:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Use the <execute> tag to run: print(7 * 6)"}],
        "background": True,
        "max_turns": 2,
        "max_tokens": 96,
        "temperature": 0,
        **extra,
    }
    answer = httpx.post(server.url + "/v1/agent", json=body, timeout=60)
    assert answer.status_code == 202, answer.text
    return answer.json()


@pytest.mark.model
def test_a_background_run_resumes_from_last_event_id_with_exactly_the_missed_events(server: LiveServer) -> None:
    run = start(server)
    assert run["status"] == "in_progress" and run["id"].startswith("sess_")
    url = server.url + run["events_url"]
    with httpx.stream("GET", url, timeout=60) as first:
        seen = events(first, limit=3)  # then the connection goes; the run does not
    last_id = seen[-1][0]
    with httpx.stream("GET", url, headers={"Last-Event-ID": str(last_id)}, timeout=120) as rest:
        resumed = events(rest)
    assert resumed[-1] == (None, "[DONE]")
    ids = [event_id for event_id, _ in seen + resumed[:-1]]
    assert ids == list(range(len(ids)))  # nothing missed, nothing twice, in order
    final = resumed[-2][1]
    assert isinstance(final, dict) and final["agent"]["type"] == "done"
    with httpx.stream("GET", url, params={"after": 1}, timeout=60) as again:
        assert [event_id for event_id, _ in events(again)][:2] == [2, 3]
    session = httpx.get(f"{server.url}/v1/agent/sessions/{run['id']}").json()
    assert session["steps"], "the run's steps are in its session"


@pytest.mark.model
def test_cancel_stops_the_run_and_a_second_run_is_refused_while_one_runs(server: LiveServer) -> None:
    run = start(server, messages=[{"role": "user", "content": "Count from 1 to 3000, one per line."}], max_tokens=1500)
    refused = httpx.post(
        server.url + "/v1/agent",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "background": True},
    )
    assert refused.status_code == 429 and "background_max_running" in refused.json()["error"]["message"]
    cancelled = httpx.post(f"{server.url}/v1/agent/sessions/{run['id']}/cancel", timeout=30).json()
    assert cancelled["status"] == "cancelled"
    deadline = time.monotonic() + 10
    while httpx.get(server.url + "/health").json()["queue_depth"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(server.url + "/health").json()["queue_depth"] == 0


def test_background_refusals_name_the_field(server: LiveServer) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "background": True, "tools": tools}
    answer = httpx.post(server.url + "/v1/agent", json=body)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "tools"
    assert httpx.get(server.url + "/v1/agent/sessions/sess_none/events").status_code == 404
