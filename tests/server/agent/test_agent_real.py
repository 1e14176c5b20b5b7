"""The agent end to end on the embedded model: real llama.cpp, real HTTP, the openai SDK.

SmolLM2-135M cannot solve tasks, so these tests assert structure: every turn is thinking
plus exactly one action (or was cut by ``max_tokens`` inside its block), and every
``<execute>`` block really ran in the sandbox — re-running the same code in a fresh
sandbox gives the same output.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import openai
import pytest

from sandbox import Sandbox
from server.agent.policy import prints_only_literals
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"
# Greedy runs whose tasks lead the tiny model to write code in one and answer in the other
# (the asserts check that both kinds of action really occurred).
RUNS = [
    {"task": "Use the <execute> tag to run: print(7 * 6)", "temperature": 0.0, "seed": 0},
    {"task": "Calculate 7 * 6 by executing Python code.", "temperature": 0.0, "seed": 0},
]
OPEN_TAGS = re.compile(r"<execute>|<solution>")


@pytest.fixture(scope="module")
def server(real_engine) -> Iterator[LiveServer]:
    settings = Settings(sandbox_pool_size=1, execution_timeout=20)
    with LiveServer(create_app(settings, real_engine, close_engine=False)) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1/agent", api_key="x", max_retries=0) as c:
        yield c


def request_args(run: dict) -> dict:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": run["task"]}],
        "temperature": run["temperature"],
        "seed": run["seed"],
        "max_tokens": 160,
        "extra_body": {"max_turns": 2},
    }


def assert_well_formed(steps: list[dict]) -> None:
    for position, step in enumerate(steps):
        # An answer-only last turn (the loop policy) has no thinking phase.
        assert step["phases"][0] == ("answer" if step["forced"] == "last_turn" else "thought")
        if step["action"]["type"] == "none":
            # Only the token budget may leave a turn without its action, and it ends the run.
            assert step["generation_finish"] == "length"
            assert position == len(steps) - 1
        if step["action"]["type"] == "execute":
            assert step["observation"]["message"].startswith("Observation:\n")
        elif step["action"].get("code") is None:  # a forced answer written as code ran it
            assert step["observation"] is None


def assert_really_executed(session: dict, steps: list[dict]) -> None:
    assistant = [m for m in session["messages"] if m["role"] == "assistant"]
    for message in assistant:
        assert len(OPEN_TAGS.findall(message["content"])) <= 1
    executed = [s for s in steps if s["action"]["type"] == "execute"]
    with Sandbox() as fresh:
        for step in executed:
            again = fresh.run(step["action"]["code"])
            assert again.stdout == step["observation"]["stdout"]
            assert (again.error is None) == (step["observation"]["error"] is None)


def test_non_stream_turns_are_well_formed_and_code_really_ran(client, server) -> None:
    kinds = []
    for run in RUNS:
        reply = client.chat.completions.create(**request_args(run))
        agent = reply.model_extra["agent"]
        assert reply.object == "chat.completion"
        assert agent["finish_reason"] in {"solution", "max_turns", "length"}
        assert reply.usage.completion_tokens == sum(s["tokens"]["completion"] for s in agent["steps"])
        assert_well_formed(agent["steps"])
        session = httpx.get(f"{server.url}/v1/agent/sessions/{agent['session_id']}").json()
        assert_really_executed(session, agent["steps"])
        kinds += [s["action"]["type"] for s in agent["steps"]]
    assert "execute" in kinds and "solution" in kinds


def test_stream_turns_are_well_formed_and_code_really_ran(client, server) -> None:
    run = RUNS[0]
    chunks = list(client.chat.completions.create(stream=True, **request_args(run)))
    events = [c.model_extra["agent"] for c in chunks]
    session_id = events[0]["session_id"]
    steps = [e["step"] for e in events if e["type"] == "step"]
    assert events[-1]["type"] == "done" and events[-1]["turns"] == len(steps)
    assert_well_formed(steps)
    for step in steps:
        code = "".join(
            e["text"] for e in events if e["type"] == "delta" and e["step"] == step["index"] and e["channel"] == "code"
        )
        if step["action"]["type"] == "execute":
            assert code.strip() == step["action"]["code"].strip() or step["action"]["code"] in code
    assert any(s["action"]["type"] == "execute" for s in steps)
    session = httpx.get(f"{server.url}/v1/agent/sessions/{session_id}").json()
    assert_really_executed(session, steps)


def greedy_run(server: LiveServer, task: str, max_tokens: int, max_turns: int, **options: str) -> dict:
    """One greedy (temperature 0, seed 0) ``/v1/agent`` run of ``task``; its ``agent`` field."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": task}],
        "temperature": 0.0,
        "seed": 0,
        "max_tokens": max_tokens,
        "max_turns": max_turns,
        **options,
    }
    return httpx.post(server.url + "/v1/agent", json=body, timeout=600).json()["agent"]


# Greedy tasks on which the tiny model runs the same code twice while that code answers
# nothing (its own literal text, or the same error): the resample policy on a real model.
STUCK_TASKS = ["Run this code: print(undefined_name)", "Use the <execute> tag to run: print(1/0)"]


def test_a_repeated_failure_is_left_out_and_the_next_turn_is_sampled(server) -> None:
    left_out = 0
    for task in STUCK_TASKS:
        agent = greedy_run(
            server,
            task,
            max_tokens=160,
            max_turns=4,
            literal_code="off",  # the embedded model's habit of printing text is not left out at once
            unrun_answer="off",  # nor its answers before code ran: every left-out step is a repeat
        )
        steps = agent["steps"]
        assert_well_formed(steps)
        session = httpx.get(f"{server.url}/v1/agent/sessions/{agent['session_id']}").json()
        history = [m["content"] for m in session["messages"]]
        # The session (what the model reads next) holds every turn but the left-out ones.
        assert sum(m["role"] == "assistant" for m in session["messages"]) == sum(not s["left_out"] for s in steps)
        for position, step in enumerate(steps):
            if not step["left_out"]:
                continue
            left_out += 1
            assert step["action"]["type"] == "execute" and step["observation"]["repeated"]
            assert step["observation"]["message"] not in history
            following = steps[position + 1]
            assert following["resampled"] or following["forced"] == "last_turn"
    assert left_out >= 1, "no run repeated a failure: the tasks no longer exercise the policy"


def test_code_that_computes_nothing_is_left_out_and_the_next_turn_is_sampled(server) -> None:
    """The embedded model copies the prompt's ``print("Hello World!")``: ``literal_code: resample``."""
    agent = greedy_run(server, "Print the words Hello World with Python.", max_tokens=160, max_turns=3)
    steps = agent["steps"]
    assert_well_formed(steps)
    literal = [
        i for i, s in enumerate(steps) if s["left_out"] and s["observation"] and not s["observation"]["repeated"]
    ]
    assert literal, [s["action"] for s in steps]
    session = httpx.get(f"{server.url}/v1/agent/sessions/{agent['session_id']}").json()
    history = "\n".join(m["content"] for m in session["messages"])
    for position in literal:
        step = steps[position]
        assert prints_only_literals(step["action"]["code"])
        assert step["observation"]["message"] not in history
        following = steps[position + 1]
        assert following["resampled"] or following["forced"] == "last_turn"


def test_an_answer_before_any_code_ran_is_left_out_and_the_next_turn_is_sampled(server) -> None:
    """The embedded model answers a question without running code: ``unrun_answer: resample``.
    Under ``code_plan: plan`` (the prompt it was seen answering at once with; under ``steps``
    it runs a print first), since what is tested is the reaction, not the prompt."""
    agent = greedy_run(server, "What is the capital of France?", max_tokens=96, max_turns=3, code_plan="plan")
    steps = agent["steps"]
    assert_well_formed(steps)
    first = steps[0]
    assert first["action"]["type"] == "solution" and first["left_out"], [s["action"] for s in steps]
    assert steps[1]["resampled"] and not steps[1]["left_out"]  # once a request
    session = httpx.get(f"{server.url}/v1/agent/sessions/{agent['session_id']}").json()
    assistant = [m["content"] for m in session["messages"] if m["role"] == "assistant"]
    assert not any(first["action"]["answer"] in turn for turn in assistant)  # the model never read it


def sampled_args(samples: int) -> dict:
    """RUNS[0] as ``samples`` runs, with a smaller turn budget (each run costs a plain run)."""
    args = request_args(RUNS[0])
    return {**args, "max_tokens": 96, "extra_body": {**args["extra_body"], "samples": samples}}


def test_samples_non_stream_through_the_sdk(client, server) -> None:
    """Two real runs side by side: each its own session, well-formed, the usage summed."""
    args = sampled_args(2)
    reply = client.chat.completions.create(**args)
    agent = reply.model_extra["agent"]
    samples = agent["samples"]
    assert [s["index"] for s in samples] == [0, 1]
    assert samples[0]["session_id"] != samples[1]["session_id"]
    for sample in samples:
        assert sample["finish_reason"] in {"solution", "no_action", "max_turns", "length"}
        assert_well_formed(sample["steps"])
    agreement = agent["agreement"]
    assert agreement["of"] == 2 and agreement["voters"] == sum(s["answer"] is not None for s in samples)
    winner = samples[agreement["sample"]]
    assert agent["session_id"] == winner["session_id"] and agent["steps"] == winner["steps"]
    assert reply.usage.completion_tokens == sum(s["usage"]["completion_tokens"] for s in samples)
    loser = samples[1 - agreement["sample"]]["session_id"]
    assert httpx.get(f"{server.url}/v1/agent/sessions/{loser}").status_code == 404


def test_samples_stream_through_the_sdk(client) -> None:
    args = sampled_args(2)
    chunks = list(client.chat.completions.create(stream=True, **args))
    events = [c.model_extra["agent"] for c in chunks]
    assert [e["sample"] for e in events if e["type"] == "session"] == [0, 1]
    assert {e["sample"] for e in events if e["type"] == "sample_done"} == {0, 1}
    for sample in (0, 1):
        steps = [e["step"] for e in events if e["type"] == "step" and e["sample"] == sample]
        assert_well_formed(steps)
    done = events[-1]
    assert done["type"] == "done" and done["agreement"]["of"] == 2 and len(done["samples"]) == 2
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "2 samples: " in content


@pytest.mark.parametrize("value", [0, 9])
def test_a_bad_samples_value_is_a_422_through_the_sdk(client, value: int) -> None:
    args = sampled_args(value)
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(**args)
    assert caught.value.body["param"] == "samples"
