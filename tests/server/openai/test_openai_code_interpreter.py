"""The Responses API's ``code_interpreter`` tool on our agent loop and sandbox.

First the mapping from agent events to output items and stream events, on hand-made
events (every case the loop can produce, deterministically); then the real thing: the
official openai client's ``responses.create(tools=[{"type": "code_interpreter", ...}])``
against real uvicorn, the embedded SmolLM2 on llama.cpp and a real sandbox worker. The
model is too small to solve anything, so those tests assert structure: the code in each
``code_interpreter_call`` really ran (its logs are what a fresh sandbox prints for it).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from models.engine.usage import Usage
from sandbox import Sandbox
from server.agent.steps import Action, AgentDone, Observation, Step, StepDone, TurnDelta
from server.api.app import create_app
from server.api.routes.responses.interpreter_items import InterpreterOutput, logs_of
from server.settings import Settings
from tests.live_server import LiveServer

MODEL = "smollm2-135m"
TOOLS = [{"type": "code_interpreter", "container": {"type": "auto"}}]
TASK = "Use the <execute> tag to run: print(7 * 6)"  # greedy SmolLM2 runs code on this one


def observation(stdout: str = "", files: tuple[str, ...] = (), **extra) -> Observation:
    fields = {"stderr": "", "error": None, "timed_out": False, "truncated": False, **extra}
    return Observation(stdout=stdout, files=list(files), **fields)


def step(index: int, action: Action, obs: Observation | None = None, **extra) -> StepDone:
    return StepDone(Step(index=index, thought="t", action=action, raw="", observation=obs, **extra))


def feed_all(output: InterpreterOutput, events: list) -> list[tuple[str, dict]]:
    return [e for event in events for e in output.feed(event)]


def output_for_test() -> InterpreterOutput:
    return InterpreterOutput("sess_x", lambda path: f"http://h/files/{path}")


# --- the mapping, without a model ---------------------------------------------------------


def test_a_run_becomes_reasoning_a_call_with_logs_and_images_and_a_cited_answer() -> None:
    out = output_for_test()
    events = feed_all(
        out,
        [
            TurnDelta(0, "thought", "Let me plot."),
            TurnDelta(0, "code", "import x\n"),
            TurnDelta(0, "code", "plot()"),
            step(0, Action("execute", code="import x\nplot()"), observation("drawn\n", ("plot.png", "data/t.csv"))),
            TurnDelta(1, "answer", "Done"),
            step(1, Action("solution", answer="Done")),
            AgentDone("solution", "Done", 2, Usage(10, 5)),
        ],
    )
    assert [item["type"] for item in out.output] == ["reasoning", "code_interpreter_call", "message"]
    reasoning, call, message = out.output
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Let me plot."}]
    assert call["code"] == "import x\nplot()" and call["status"] == "completed"
    assert call["container_id"] == "sess_x"
    assert call["outputs"] == [
        {"type": "logs", "logs": "drawn\n"},
        {"type": "image", "url": "http://h/files/plot.png"},
    ]
    text = message["content"][0]
    assert text["text"] == "Done" and out.status == "completed"
    assert [(a["type"], a["file_id"], a["filename"]) for a in text["annotations"]] == [
        ("container_file_citation", "plot.png", "plot.png"),
        ("container_file_citation", "data/t.csv", "t.csv"),
    ]
    kinds = [kind for kind, _ in events]
    assert kinds == [
        "response.output_item.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.code_interpreter_call.in_progress",
        "response.code_interpreter_call_code.delta",
        "response.code_interpreter_call_code.delta",
        "response.code_interpreter_call_code.done",
        "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    # Every event names the item it belongs to by its place in the output.
    for kind, fields in events:
        if "output_index" in fields and "item_id" in fields:
            assert out.output[fields["output_index"]]["id"] == fields["item_id"], kind


def test_a_killed_run_fails_a_cut_block_is_incomplete_and_a_cut_answer_too() -> None:
    out = output_for_test()
    feed_all(
        out,
        [
            TurnDelta(0, "code", "while True: pass"),
            step(0, Action("execute", code="while True: pass"), observation(timed_out=True)),
            TurnDelta(1, "code", "print(1"),  # max_tokens ends the turn inside its block
            step(1, Action("none")),
            AgentDone("length", "", 2, Usage(10, 5)),
        ],
    )
    failed, cut, message = out.output
    assert failed["status"] == "failed" and "timed out" in failed["outputs"][0]["logs"]
    assert cut["status"] == "incomplete" and cut["code"] == "print(1" and cut["outputs"] is None
    assert message["type"] == "message"
    assert (out.status, out.incomplete) == ("incomplete", "max_output_tokens")


def test_code_that_streamed_as_an_answer_and_ran_is_a_call_too() -> None:
    """A ``<solution>`` holding code on a last turn is run; what it prints is the answer."""
    out = output_for_test()
    events = feed_all(
        out,
        [
            TurnDelta(0, "answer", "print(6 * 7)"),
            step(0, Action("solution", code="print(6 * 7)", answer="42"), observation("42\n")),
            AgentDone("solution", "42", 1, Usage(10, 5)),
        ],
    )
    call, message = out.output
    assert call["code"] == "print(6 * 7)" and call["outputs"] == [{"type": "logs", "logs": "42\n"}]
    assert message["content"][0]["text"] == "42"
    assert (
        "response.code_interpreter_call_code.delta",
        {"item_id": call["id"], "output_index": 0, "delta": "print(6 * 7)"},
    ) in events


def test_a_questioned_answer_is_no_call_and_the_repeat_answer_keeps_its_call() -> None:
    out = output_for_test()
    feed_all(
        out,
        [
            TurnDelta(0, "answer", "12"),
            step(0, Action("solution", answer="12"), observation()),  # the server's note, no code
            TurnDelta(1, "code", "print(12)"),
            step(1, Action("solution", answer="12"), None, repeated_code="print(12)", forced="repeat"),
            AgentDone("solution", "12", 2, Usage(10, 5)),
        ],
    )
    assert [item["type"] for item in out.output] == ["code_interpreter_call", "message"]
    assert out.output[0]["code"] == "print(12)" and out.output[0]["status"] == "completed"


def test_logs_hold_output_error_and_why_a_run_stopped() -> None:
    obs = observation("out", stderr="warn\n", error="Traceback\nValueError: x", killed_reason="memory", truncated=True)
    assert logs_of(obs) == (
        "out\nwarn\nTraceback\nValueError: x\n[the execution was stopped: memory]\n[the output was cut]\n"
    )


# --- real model, real sandbox ------------------------------------------------------------


@pytest.fixture(scope="module")
def server(real_engine) -> Iterator[LiveServer]:
    settings = Settings(sandbox_pool_size=1, execution_timeout=20)
    with LiveServer(create_app(settings, real_engine, close_engine=False)) as live:
        yield live


def ran_as_shown(call) -> None:
    """The call's logs are what its code prints in a fresh sandbox: it really ran."""
    assert call.type == "code_interpreter_call" and call.id.startswith("ci_")
    assert call.container_id.startswith("sess_") and call.status in {"completed", "failed"}
    with Sandbox() as fresh:
        result = fresh.run(call.code, timeout=20)
    logs = call.outputs[0]
    assert logs.type == "logs"
    assert result.stdout in logs.logs


@pytest.mark.model
def test_responses_create_runs_code_in_the_sandbox(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL,
        input=TASK,
        tools=TOOLS,
        temperature=0,
        max_output_tokens=160,
        max_tool_calls=1,
        include=["code_interpreter_call.outputs"],
    )
    calls = [item for item in response.output if item.type == "code_interpreter_call"]
    assert calls, [item.type for item in response.output]
    for call in calls:
        ran_as_shown(call)
    assert response.output[-1].type == "message"
    assert response.status in {"completed", "incomplete"}
    assert response.usage.output_tokens > 0
    assert client.responses.retrieve(response.id).output[-1].id == response.output[-1].id


@pytest.mark.model
def test_stream_sends_the_code_interpreter_events_and_the_same_items(client: openai.OpenAI) -> None:
    stream = client.responses.create(
        model=MODEL, input=TASK, tools=TOOLS, temperature=0, max_output_tokens=160, max_tool_calls=1, stream=True
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in {"response.completed", "response.incomplete"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for kind in ("in_progress", "interpreting", "completed"):
        assert f"response.code_interpreter_call.{kind}" in kinds
    final = events[-1].response
    calls = [item for item in final.output if item.type == "code_interpreter_call"]
    assert calls
    for call in calls:
        ran_as_shown(call)
        streamed = "".join(
            e.delta for e in events if e.type == "response.code_interpreter_call_code.delta" and e.item_id == call.id
        )
        done = next(e for e in events if e.type == "response.code_interpreter_call_code.done" and e.item_id == call.id)
        assert done.code == call.code
        assert streamed.strip() == call.code.strip()


@pytest.mark.model
def test_a_follow_up_continues_the_same_container(client: openai.OpenAI, server: LiveServer) -> None:
    first = client.responses.create(
        model=MODEL, input=TASK, tools=TOOLS, temperature=0, max_output_tokens=160, max_tool_calls=1
    )
    container = next(item.container_id for item in first.output if item.type == "code_interpreter_call")
    session = httpx.get(f"{server.url}/v1/agent/sessions/{container}").json()
    second = client.responses.create(
        model=MODEL,
        input="Now run: print(1 + 1)",
        previous_response_id=first.id,
        tools=TOOLS,
        temperature=0,
        max_output_tokens=120,
        max_tool_calls=1,
    )
    grown = httpx.get(f"{server.url}/v1/agent/sessions/{container}").json()
    assert grown["turns"] > session["turns"]  # the same session took the follow-up's turns
    assert all(item.container_id == container for item in second.output if item.type == "code_interpreter_call")
    named = client.responses.create(
        model=MODEL,
        input="Run: print(2)",
        temperature=0,
        max_output_tokens=80,
        max_tool_calls=1,
        tools=[{"type": "code_interpreter", "container": container}],
    )
    assert httpx.get(f"{server.url}/v1/agent/sessions/{container}").json()["turns"] > grown["turns"]
    assert named.output[-1].type == "message"


@pytest.mark.model  # no inference, but the server holds the embedded model
@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"tools": [*TOOLS, {"type": "function", "name": "f", "parameters": {}}]}, 400, "tools"),
        ({"tool_choice": "required"}, 400, "tool_choice"),
        (
            {"tools": [{"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["f"]}}]},
            400,
            "tools[0].container.file_ids",
        ),
        ({"tools": [{"type": "code_interpreter", "container": "sess_gone"}]}, 404, "tools[0].container"),
        ({"tools": [{"type": "code_interpreter"}]}, 400, "tools[0].container"),
        ({"text": {"format": {"type": "json_object"}}}, 400, "text.format"),
        ({"tools": None, "max_tool_calls": 2}, 400, "max_tool_calls"),
    ],
)
def test_what_it_cannot_honour_is_refused_naming_the_field(
    server: LiveServer, fields: dict, status: int, param: str
) -> None:
    body = {"model": MODEL, "input": "Hello", "tools": TOOLS, "max_output_tokens": 2, **fields}
    r = httpx.post(server.url + "/v1/responses", json={k: v for k, v in body.items() if v is not None})
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
