"""``GET /metrics`` after real requests: HTTP counts, tokens, TTFT, sandbox runs, sessions."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

USER = [{"role": "user", "content": "Go."}]


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}."""
    response = httpx.get(url + "/metrics", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def server() -> Iterator[tuple[LiveServer, ScriptedEngine]]:
    engine = ScriptedEngine(token_delay_s=0.002)
    settings = Settings(sandbox_pool_size=1, api_key=["k"])
    with LiveServer(create_app(settings, engine)) as live:
        yield live, engine


def test_metrics_after_chat_and_agent_requests(server: tuple[LiveServer, ScriptedEngine]) -> None:
    live, engine = server
    auth = {"Authorization": "Bearer k"}
    engine.enqueue("The sea is wide and deep.", "Waves come and go, one by one.")
    usages = []
    with openai.OpenAI(base_url=live.url + "/v1", api_key="k", max_retries=0) as client:
        usages.append(client.chat.completions.create(model="scripted", messages=USER).usage)
        stream = client.chat.completions.create(
            model="scripted", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        usages.append([c for c in stream if c.usage][0].usage)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="no-such-model", messages=USER)
    httpx.get(live.url + "/v1/models")  # 401 before routing: counted, as "unrouted"

    engine.enqueue(
        "<execute>print('hi')</execute>",
        "<execute>import time\ntime.sleep(30)</execute>",
        "<solution>done</solution>",
    )
    body = {"model": "scripted", "messages": USER, "execution_timeout": 1}
    reply = httpx.post(live.url + "/v1/agent", json=body, headers=auth, timeout=60).json()
    session_id = reply["agent"]["session_id"]
    assert [s["observation"]["timed_out"] for s in reply["agent"]["steps"][:2]] == [False, True]
    httpx.get(live.url + f"/v1/agent/sessions/{session_id}", headers=auth).raise_for_status()

    m = scrape(live.url, **auth)
    requests = "codeact_http_requests_total"
    assert value(m, requests, route="/v1/chat/completions", method="POST", status="200") == 2
    assert value(m, requests, route="/v1/chat/completions", method="POST", status="404") == 1
    assert value(m, requests, route="unrouted", method="GET", status="401") == 1
    assert value(m, requests, route="/v1/agent", method="POST", status="200") == 1
    # Session ids never become labels: the route template does.
    assert value(m, requests, route="/v1/agent/sessions/{session_id}", method="GET", status="200") == 1
    assert value(m, "codeact_http_request_duration_seconds_count", route="/v1/agent") == 1

    chat_prompt = sum(u.prompt_tokens for u in usages)
    chat_completion = sum(u.completion_tokens for u in usages)
    agent_usage = reply["usage"]
    assert value(m, "codeact_prompt_tokens_total") >= chat_prompt + agent_usage["prompt_tokens"]
    assert value(m, "codeact_completion_tokens_total") == chat_completion + agent_usage["completion_tokens"]
    generations = sum(v for (name, _), v in m.items() if name == "codeact_generations_total")
    assert generations >= 5  # two chats, three agent turns (each one to three generations)
    assert value(m, "codeact_time_to_first_token_seconds_count") == generations
    assert value(m, "codeact_decode_tokens_per_second_count") >= 2
    assert value(m, "codeact_last_decode_tokens_per_second") > 0

    assert value(m, "codeact_sandbox_runs_total") == 2
    assert value(m, "codeact_sandbox_timeouts_total") == 1
    assert value(m, "codeact_sandbox_kills_total", reason="timeout") == 1
    assert value(m, "codeact_agent_runs_total", finish_reason="solution") == 1
    assert value(m, "codeact_active_sessions") == 1
    assert value(m, "codeact_queue_depth") == 0
    assert value(m, "codeact_http_requests_in_flight") == 1  # this scrape itself

    httpx.delete(live.url + f"/v1/agent/sessions/{session_id}", headers=auth).raise_for_status()
    assert value(scrape(live.url, **auth), "codeact_active_sessions") == 0


def test_each_app_counts_on_its_own() -> None:
    with LiveServer(create_app(Settings(sandbox_pool_size=0), ScriptedEngine())) as live:
        httpx.get(live.url + "/health")
        m = scrape(live.url)
    assert value(m, "codeact_http_requests_total", route="/health", method="GET", status="200") == 1
    assert value(m, "codeact_http_requests_total", route="/metrics", method="GET", status="200") == 0  # not yet


@pytest.mark.model
def test_real_model_tokens_match_usage(real_engine) -> None:
    app = create_app(Settings(sandbox_pool_size=0), real_engine, close_engine=False)
    with (
        LiveServer(app) as live,
        openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0) as client,
    ):
        usage = client.chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": "Name three colours."}],
            max_tokens=16,
            temperature=0,
        ).usage
        httpx.get(live.url + "/nowhere")
        m = scrape(live.url)
    assert value(m, "codeact_prompt_tokens_total") == usage.prompt_tokens
    assert value(m, "codeact_completion_tokens_total") == usage.completion_tokens
    assert value(m, "codeact_time_to_first_token_seconds_count") == 1
    assert value(m, "codeact_http_requests_total", route="unrouted", method="GET", status="404") == 1
