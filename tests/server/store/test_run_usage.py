"""What a run cost: every step's tokens and its execution's CPU, peak memory and wall time.

Real parts: real uvicorn, the official openai client, a real sandbox worker that really
allocates and computes; the scripted model makes the steps deterministic. The figures are
the kernel's (``Sandbox._execute``): a step that allocates 200 MB and frees it again must still
report a peak above 200 MB, and a CPU-bound step must report CPU time close to its wall time.
A real SmolLM2 run's steps must add up to the run's usage too.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

ALLOCATE = "block = b'x' * (200 << 20)\ndel block\nprint('allocated')"
#: CPU-bound; prints the CPU milliseconds the cell itself counted (``time.process_time``), which
#: the server's figure must match: on a busy machine a cell gets less CPU than its wall time.
COMPUTE = (
    "import time\nstart = time.process_time()\ntotal = 0\nfor i in range(4_000_000):\n    total += i * i\n"
    "print(round((time.process_time() - start) * 1000))"
)
TURNS = [
    f"Allocate.\n<execute>\n{ALLOCATE}\n</execute>",
    f"Compute.\n<execute>\n{COMPUTE}\n</execute>",
    "<solution>done</solution>",
]
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens")


@pytest.fixture
def live() -> Iterator[LiveServer]:
    settings = Settings(sandbox_pool_size=1, execution_timeout=60)
    with LiveServer(create_app(settings, ScriptedEngine(list(TURNS)))) as server:
        yield server


def client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, timeout=180)


def test_each_step_reports_its_tokens_cpu_and_peak_memory_and_the_run_adds_them_up(live: LiveServer) -> None:
    body = {"model": "scripted", "messages": [{"role": "user", "content": "Go."}], "max_turns": 4}
    answer = client(live).post("/agent", cast_to=ChatCompletion, body=body)
    assert answer.usage is not None and answer.choices[0].message.content == "done"
    steps = answer.model_extra["agent"]["steps"]
    usages = [s["usage"] for s in steps]
    allocate, compute, solution = usages

    assert allocate["sandbox"]["peak_memory_mb"] > 200, allocate
    assert compute["sandbox"]["peak_memory_mb"] < 200, compute  # a peak of its own, not the step before's
    cpu, wall = compute["sandbox"]["cpu_ms"], compute["sandbox"]["wall_ms"]
    counted = float(steps[1]["observation"]["stdout"])
    assert counted > 200 and abs(cpu - counted) <= 0.2 * counted, (counted, compute["sandbox"])
    assert cpu <= wall + 20, compute["sandbox"]  # one process: no more CPU than time passed (+ a tick)
    assert solution["sandbox"] is None  # no code ran
    for step in steps:
        assert step["usage"]["prompt_tokens"] == step["tokens"]["prompt"] > 0
        assert step["usage"]["completion_tokens"] == step["tokens"]["completion"] > 0

    run = answer.model_extra["agent"]["usage"]
    for name in TOKEN_FIELDS:
        assert run[name] == sum(u[name] for u in usages) == getattr(answer.usage, name)
    assert run["sandbox"]["executions"] == 2
    assert run["sandbox"]["cpu_ms"] == pytest.approx(allocate["sandbox"]["cpu_ms"] + cpu, abs=0.2)
    assert run["sandbox"]["peak_memory_mb"] == allocate["sandbox"]["peak_memory_mb"]
    assert answer.usage.model_extra["sandbox"] == run["sandbox"]  # the chat usage carries it too

    stored = httpx.get(f"{live.url}/v1/agent/runs/{answer.id}").json()
    assert [s["usage"] for s in stored["steps"]] == usages
    assert stored["outcome"]["usage"] == run

    metrics = httpx.get(live.url + "/metrics").text
    assert "codeact_sandbox_peak_memory_bytes_count 2.0" in metrics
    assert "codeact_sandbox_cpu_seconds_count 2.0" in metrics


def test_the_responses_code_interpreter_reports_the_sandbox_in_usage() -> None:
    settings = Settings(sandbox_pool_size=1, execution_timeout=60)
    with LiveServer(create_app(settings, ScriptedEngine(list(TURNS)))) as live:
        response = client(live).responses.create(
            model="scripted",
            input="Go.",
            tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
        )
    assert response.usage is not None and response.usage.output_tokens > 0
    sandbox = response.usage.model_extra["sandbox"]
    assert sandbox["executions"] == 2 and sandbox["peak_memory_mb"] > 200


def test_a_real_smollm2_runs_steps_add_up_to_its_usage(server: LiveServer) -> None:
    body = {
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": "Use the <execute> tag to run: print(7 * 6)"}],
        "max_turns": 2,
        "max_tokens": 48,
        "temperature": 0,
    }
    answer = client(server).post("/agent", cast_to=ChatCompletion, body=body)
    steps = answer.model_extra["agent"]["steps"]
    assert steps
    run = answer.model_extra["agent"]["usage"]
    for name in TOKEN_FIELDS:
        assert run[name] == sum(s["usage"][name] for s in steps) == getattr(answer.usage, name) > 0
    ran = [s for s in steps if s["observation"] is not None]
    assert (run["sandbox"] or {}).get("executions", 0) == len(ran)
