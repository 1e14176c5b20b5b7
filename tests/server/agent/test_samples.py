"""``samples: k`` with the scripted model over real HTTP and the real sandbox: k runs, one answer.

The scripted model plays a turn chosen by the request's seed (sample 0 keeps the request's:
None at temperature 0; sample i is seeded ``i``: the seed base a request without a seed draws
from its task is pinned to 0 here, ``test_vote_table`` checks it), so each sample's run is
fixed whatever order the runs interleave in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from models.engine.api import EngineError, GenerationRequest
from models.engine.scripted import ScriptedEngine
from server.agent.consensus import runner
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer
from tests.scripted_agent import ANSWER_AT_ONCE, MODEL, agent


@pytest.fixture(autouse=True)
def seed_base_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "task_seed", lambda messages: 0)


RUN_KEYS = {"session_id", "finish_reason", "turns", "final_message", "forced_answer", "usage", "error", "run_id"}


def by_seed(turns: dict[int | None, list[str]]) -> Callable[[GenerationRequest], str]:
    """A sampler that plays ``turns[seed][n]`` for the n-th assistant turn of a conversation."""

    def play(request: GenerationRequest) -> str:
        done = request.prompt.count("<|im_start|>assistant\n") - 1
        return turns[request.seed][done]

    return play


@contextmanager
def serving(engine: ScriptedEngine, **settings: object) -> Iterator[LiveServer]:
    with LiveServer(
        create_app(Settings(sandbox_pool_size=1, execution_timeout=20, **{**ANSWER_AT_ONCE, **settings}), engine)
    ) as live:
        yield live


def answers(*values: str) -> dict[int | None, list[str]]:
    """Sample i answers ``values[i]`` at once (sample 0's seed is None)."""
    return {(i or None): [f"<solution>{value}</solution>"] for i, value in enumerate(values)}


def session_status(server: LiveServer, session_id: str) -> int:
    return httpx.get(f"{server.url}/v1/agent/sessions/{session_id}").status_code


def test_the_answer_most_runs_agree_on_wins_and_only_its_session_stays() -> None:
    engine = ScriptedEngine(sampler=by_seed(answers("61", "60", "60.0000000001")))
    with serving(engine) as server:
        reply = agent(server, samples=3, temperature=0)
        run = reply["agent"]
        assert reply["choices"][0]["message"]["content"] == "60"
        assert run["agreement"] == {"answer": "60", "votes": 2, "voters": 3, "of": 3, "sample": 1}
        samples = run["samples"]
        assert [s["index"] for s in samples] == [0, 1, 2]
        assert [s["answer"] for s in samples] == ["61", "60", "60.0000000001"]
        assert all(s["finish_reason"] == "solution" and s["turns"] == 1 and len(s["steps"]) == 1 for s in samples)
        # The agent fields are the winning run's; its session continues, the others are closed.
        assert run["session_id"] == samples[1]["session_id"]
        assert run["steps"] == samples[1]["steps"]
        assert len({s["session_id"] for s in samples}) == 3
        assert [session_status(server, s["session_id"]) for s in samples] == [404, 200, 404]
        # Usage: every run's, in the agent field and the response's.
        for kind in ("prompt_tokens", "completion_tokens", "total_tokens"):
            total = sum(s["usage"][kind] for s in samples)
            assert run["usage"][kind] == reply["usage"][kind] == total > 0
        # Sample 0 greedy as asked; the others sampled at 0.7 with their own seeds.
        assert {(r.seed, r.temperature) for r in engine.requests} == {(None, 0.0), (1, 0.7), (2, 0.7)}


def test_each_sample_runs_in_its_own_session() -> None:
    """A variable one run sets is not the other runs' (they run at the same time)."""
    turns = {
        seed: [
            f"<execute>x = 'sample {seed or 0}'\nprint(x)</execute>",
            "<execute>print(x)</execute>",
            "<solution>done</solution>",
        ]
        for seed in (None, 1, 2)
    }
    engine = ScriptedEngine(sampler=by_seed(turns))
    with serving(engine) as server:
        reply = agent(server, samples=3)
    for sample in reply["agent"]["samples"]:
        outputs = [step["observation"]["stdout"] for step in sample["steps"][:2]]
        assert outputs == [f"sample {sample['index']}\n"] * 2


def test_a_tie_goes_to_sample_0_and_runs_without_an_answer_do_not_vote() -> None:
    no_answer = {2: ["I would rather chat."], 3: ["<execute>print(1 + 0)</execute>", "<execute>print(2 + 0)</execute>"]}
    turns = answers("a", "b") | no_answer
    engine = ScriptedEngine(sampler=by_seed(turns))
    with serving(engine) as server:
        reply = agent(server, samples=4, max_turns=2, final_answer=False)
    run = reply["agent"]
    assert [s["finish_reason"] for s in run["samples"]] == ["solution", "solution", "no_action", "max_turns"]
    assert [s["answer"] for s in run["samples"]] == ["a", "b", None, None]
    assert run["agreement"] == {"answer": "a", "votes": 1, "voters": 2, "of": 4, "sample": 0}
    assert reply["choices"][0]["message"]["content"] == "a"


def test_with_no_answer_at_all_sample_0_is_the_result() -> None:
    engine = ScriptedEngine(sampler=by_seed({None: ["Hello there."], 1: ["Hi!"]}))
    with serving(engine) as server:
        reply = agent(server, samples=2)
        run = reply["agent"]
        assert run["agreement"] == {"answer": None, "votes": 0, "voters": 0, "of": 2, "sample": 0}
        assert run["finish_reason"] == "no_action" and reply["choices"][0]["message"]["content"] == "Hello there."
        assert run["session_id"] == run["samples"][0]["session_id"]
        assert session_status(server, run["session_id"]) == 200


def test_the_request_seed_and_temperature_set_every_samples() -> None:
    turns = {10: ["<solution>1</solution>"], 11: ["<solution>1</solution>"], 12: ["<solution>2</solution>"]}
    engine = ScriptedEngine(sampler=by_seed(turns))
    with serving(engine) as server:
        reply = agent(server, samples=3, seed=10, temperature=0.2)
    assert {(r.seed, r.temperature) for r in engine.requests} == {(10, 0.2), (11, 0.7), (12, 0.7)}
    assert reply["agent"]["agreement"]["votes"] == 2


def test_one_sample_is_a_plain_run(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<solution>42</solution>")
    reply = agent(server, samples=1, temperature=0)
    assert set(reply["agent"]) == RUN_KEYS | {"steps"}
    assert {(r.seed, r.temperature) for r in engine.requests} == {(None, 0.0)}


def test_samples_wait_in_a_full_queue() -> None:
    """Beside an admitted first run, the others' first generations wait instead of a 503."""
    engine = ScriptedEngine(sampler=by_seed(answers("7", "7", "7")), max_queue=1, token_delay_s=0.01)
    with serving(engine) as server:
        reply = agent(server, samples=3)
    assert [s["finish_reason"] for s in reply["agent"]["samples"]] == ["solution"] * 3
    assert reply["agent"]["agreement"]["votes"] == 3


def test_stream_tags_every_event_with_its_sample_and_ends_with_the_agreement() -> None:
    turns = {
        None: ["<execute>print(6 * 7)</execute>", "<solution>42</solution>"],
        1: ["<solution>42.0</solution>"],
    }
    engine = ScriptedEngine(sampler=by_seed(turns))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "6 * 7?"}], "stream": True, "samples": 2}
    with serving(engine) as server:
        with httpx.stream("POST", server.url + "/v1/agent", json=body, timeout=60) as response:
            assert response.status_code == 200
            lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        chunks = [json.loads(line) for line in lines[:-1]]
        events = [c["agent"] for c in chunks if "agent" in c]
        sessions = [e for e in events if e["type"] == "session"]
        assert [s["sample"] for s in sessions] == [0, 1]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        for kind in ("delta", "step", "sample_done"):
            assert {e["sample"] for e in events if e["type"] == kind} == {0, 1}
        ends = {e["sample"]: e for e in events if e["type"] == "sample_done"}
        assert ends[0]["answer"] == "42" and ends[0]["turns"] == 2 and ends[1]["answer"] == "42.0"
        done = events[-1]
        assert done["type"] == "done"
        assert done["agreement"] == {"answer": "42", "votes": 2, "voters": 2, "of": 2, "sample": 0}
        assert done["session_id"] == sessions[0]["session_id"] and "steps" not in done["samples"][0]
        assert done["usage"]["completion_tokens"] == sum(s["usage"]["completion_tokens"] for s in done["samples"])
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert "print(6 * 7)" in content and content.endswith("_[2 samples: 2 of 2 agree on 42]_\n")
        assert session_status(server, sessions[1]["session_id"]) == 404


@pytest.mark.parametrize("value", [0, 9, "x", 2.5])
def test_a_bad_samples_value_is_refused_naming_it(server: LiveServer, value: object) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "samples": value}
    response = httpx.post(server.url + "/v1/agent", json=body, timeout=30)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "samples"


@pytest.mark.parametrize("continues", [True, False])
def test_samples_where_a_request_is_one_run_are_refused(
    server: LiveServer, engine: ScriptedEngine, continues: bool
) -> None:
    """A follow-up on a session, or a run with the client's function tools, is one run."""
    if continues:
        engine.enqueue("<solution>1</solution>")
        extra: dict = {"session_id": agent(server)["agent"]["session_id"]}
    else:
        extra = {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "samples": 2, **extra}
    response = httpx.post(server.url + "/v1/agent", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "samples"
    unknown = {**body, "session_id": "sess_unknown"}  # an unknown session: 404 before anything else
    assert httpx.post(server.url + "/v1/agent", json=unknown, timeout=30).status_code == 404


def test_a_background_run_samples_and_is_followed_by_sample_0s_session() -> None:
    engine = ScriptedEngine(sampler=by_seed(answers("5", "6", "6")))
    with serving(engine) as server:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "?"}], "samples": 3, "background": True}
        started = httpx.post(server.url + "/v1/agent", json=body, timeout=30)
        assert started.status_code == 202, started.text
        first = started.json()["id"]
        with httpx.stream("GET", f"{server.url}{started.json()['events_url']}", timeout=60) as response:
            lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        events = [json.loads(line)["agent"] for line in lines[:-1]]
        sessions = [e["session_id"] for e in events if e["type"] == "session"]
        assert sessions[0] == first and len(sessions) == 3
        done = events[-1]
        assert done["type"] == "done" and done["agreement"]["answer"] == "6"
        assert done["session_id"] == sessions[1] != first  # the winner continues; sample 0 lost
        assert session_status(server, first) == 404 and session_status(server, sessions[1]) == 200


def test_the_server_setting_samples_new_sessions_only() -> None:
    engine = ScriptedEngine(sampler=by_seed({None: ["<solution>1</solution>"] * 2, 1: ["<solution>1</solution>"]}))
    with serving(engine, agent_samples=2) as server:
        first = agent(server)
        assert first["agent"]["agreement"]["of"] == 2
        follow_up = agent(server, "And again?", session_id=first["agent"]["session_id"])
        assert "samples" not in follow_up["agent"] and follow_up["agent"]["finish_reason"] == "solution"


def test_a_failing_run_fails_the_request_and_leaves_only_sample_0s_session() -> None:
    """One run's engine failure stops the others; as after a failed plain run, one session stays."""

    def play(request: GenerationRequest) -> str:
        if request.seed == 2:
            raise EngineError("the model broke")
        return "<execute>import time\ntime.sleep(0.5)</execute>" if request.seed else "<solution>1</solution>"

    engine = ScriptedEngine(sampler=play)
    with serving(engine) as server:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "?"}], "samples": 3}
        response = httpx.post(server.url + "/v1/agent", json=body, timeout=60)
        assert response.status_code >= 500 and "the model broke" in response.text
        assert httpx.get(server.url + "/health").json()["sessions"] == 1
