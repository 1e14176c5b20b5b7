"""The HTTP harness against a fake ``/v1/agent`` (httpx.MockTransport), and its report.

The fake plays the server's part with our own pieces: it executes the request's tool
sources in a fresh namespace (as the sandbox will), lets the oracle responder take turns,
runs the code it emits, and answers in the documented response shape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.m3tooleval import harness
from benchmarks.m3tooleval.__main__ import main
from benchmarks.m3tooleval.data import task_by_name
from benchmarks.m3tooleval.harness import (
    agent_request,
    count_malformed,
    record_response,
    run_task,
    select_tasks,
)
from benchmarks.m3tooleval.local_exec import run_cell, tool_namespace
from benchmarks.m3tooleval.oracle_model import OracleResponder
from benchmarks.m3tooleval.report import render_table, summarize, write_results


def _fake_agent(request: httpx.Request) -> httpx.Response:
    if request.method == "DELETE":
        DELETED.append(request.url.path)
        return httpx.Response(200, json={"deleted": True})
    body = json.loads(request.content)
    namespace = tool_namespace(body["tools"])
    responder = OracleResponder()
    prompt = "<|im_start|>user\n" + body["messages"][0]["content"] + "<|im_end|>\n"
    steps: list[dict[str, Any]] = []
    content = ""
    for _ in range(body["max_turns"]):
        turn = responder(prompt + "<|im_start|>assistant\n")
        prompt += f"<|im_start|>assistant\n{turn}<|im_end|>\n"
        code = re.search(r"<execute>(.*?)</execute>", turn, re.DOTALL)
        if code is None:
            solution = re.search(r"<solution>(.*?)</solution>", turn, re.DOTALL)
            content = solution.group(1) if solution else turn
            steps.append({"action": {"type": "solution" if solution else "none"}})
            break
        observation = run_cell(namespace, code.group(1))
        steps.append({"action": {"type": "execute"}, "observation": observation})
        prompt += f"<|im_start|>user\nObservation:\n{observation}<|im_end|>\n"
    return httpx.Response(
        200,
        json={
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
            "agent": {"session_id": "s", "finish_reason": "solution", "turns": len(steps), "steps": steps},
        },
    )


#: Paths of the session deletes the fake endpoint received.
DELETED: list[str] = []


def _client(handler: Any) -> httpx.Client:
    return httpx.Client(base_url="http://test", transport=httpx.MockTransport(handler))


def test_request_body_shape() -> None:
    task = task_by_name("travel_itinerary_planning/plan_trip_to_0")
    body = agent_request(task, "m")
    assert body["model"] == "m" and body["max_turns"] == 10
    assert body["temperature"] == 0 and body["stream"] is False
    assert body["execution_timeout"] == 30  # the reference's per-execution limit in evaluation
    assert body["messages"][0]["role"] == "user"
    assert task["instruction"] in body["messages"][0]["content"]
    assert [t["name"] for t in body["tools"]] == [
        "find_flights",
        "book_hotel",
        "budget_calculator",
        "max",
        "min",
        "sum",
    ]
    assert set(body["tools"][0]) == {"name", "signature", "description", "source"}
    json.dumps(body)  # serialisable as is


@pytest.mark.parametrize(
    "name", ["web_browsing/people_in_customer_support", "trade_calculator/dynamic_pricing_strategy"]
)
def test_oracle_through_fake_endpoint(name: str) -> None:
    task = task_by_name(name)
    with _client(_fake_agent) as client:
        run = run_task(client, task, model="oracle")
    assert run.error is None
    assert run.reference and run.lenient
    assert run.turns == 2 and run.malformed_turns == 0 and run.completion_tokens == 20
    assert DELETED[-1] == "/v1/agent/sessions/s"  # the task's sandbox is not left behind


def test_http_error_becomes_failed_record() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"message": "queue full", "type": "server_error"}})

    with _client(refuse) as client:
        run = run_task(client, task_by_name("message_decoder/full_alien_message_decoding"), model="m")
    assert not run.reference and run.error == "HTTP 503: queue full"


def test_malformed_turns_and_summary(tmp_path: Path) -> None:
    task = task_by_name("message_decoder/full_alien_message_decoding")
    response = {
        "choices": [{"message": {"content": "fchahcufcu"}}],
        "usage": {"completion_tokens": 50},
        "agent": {
            "finish_reason": "no_action",
            "turns": 2,
            "steps": [{"action": {"type": "execute"}}, {"action": {"type": "none"}}],
        },
    }
    run = record_response(task, response, wall_s=2.0)
    # The right text, but not handed in as a solution: no answer, judged wrong.
    assert (run.turns, run.malformed_turns, run.answer, run.reference) == (2, 1, None, False)
    assert run.final_message == "fchahcufcu"
    assert count_malformed([{"action": {"type": "solution"}}]) == 0
    summary = summarize([run], wall_s=2.5)
    assert summary["malformed_turn_rate"] == 0.5 and summary["tokens_per_s"] == 25.0
    assert summary["no_solution"] == 1
    assert "message_decoder" in render_table(summary)
    run_dir = write_results(tmp_path, [run], summary, {"settings": {"model": "x/y"}})
    assert json.loads((run_dir / "summary.json").read_text())["summary"]["tasks"] == 1
    per_task = json.loads((run_dir / "tasks" / "message_decoder__full_alien_message_decoding.json").read_text())
    assert per_task["response"] == response


def test_select_tasks() -> None:
    assert len(select_tasks()) == 82
    assert len(select_tasks("trade_calculator")) == 17
    assert [t["name"] for t in select_tasks("people_in_sales")] == ["web_browsing/people_in_sales"]
    assert len(select_tasks("web_browsing/price_*,message_decoder", limit=5)) == 5
    with pytest.raises(ValueError):
        select_tasks("nothing_like_this")


def test_cli_oracle_dry_run_prints_success_last(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--oracle", "--dry-run", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == "success 82/82"


def test_cli_against_fake_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_client = httpx.Client

    def fake_client(**kwargs: Any) -> httpx.Client:
        return real_client(transport=httpx.MockTransport(_fake_agent), **kwargs)

    monkeypatch.setattr(harness.httpx, "Client", fake_client)
    argv = ["--server", "http://fake", "--tasks", "travel_itinerary_planning", "--limit", "3", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == "success 3/3"
