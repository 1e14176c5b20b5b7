"""The client's own function tools as sandbox functions, through unmodified client tool loops.

Real uvicorn, the real sandbox, the scripted model (its code calls the client's tool twice in
one action), and real client libraries: the official ``openai`` client's ordinary tool loop,
streaming and not, and LangChain's ``bind_tools``. Each call suspends the execution; the
client runs the tool and sends the ``tool`` message back; the run resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from models.engine.scripted import ScriptedEngine
from tests.live_server import LiveServer
from tests.scripted_agent import MODEL, scripted_server

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get-weather",
        "description": "Current temperature of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "city name"}},
            "required": ["city"],
        },
    },
}
TWO_CALLS = (
    "<execute>\nfirst = get_weather('Oslo')\nsecond = get_weather(city='Lima')\n"
    "print(first['temp'] + second['temp'], type(first).__name__)\n</execute>"
)


def weather(city: str) -> dict[str, Any]:
    """The client's implementation: the server never sees this code."""
    return {"city": city, "temp": len(city)}


@pytest.fixture
def engine() -> ScriptedEngine:
    engine = ScriptedEngine()
    engine.enqueue(TWO_CALLS, "<solution>nine</solution>")
    return engine


@pytest.fixture
def server(engine: ScriptedEngine) -> Iterator[LiveServer]:
    with scripted_server(engine) as live:
        yield live


def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1/agent", api_key="unused", max_retries=0)


def test_the_openai_tool_loop(server: LiveServer, engine: ScriptedEngine) -> None:
    messages: list[Any] = [{"role": "user", "content": "Sum the temperatures of Oslo and Lima."}]
    calls: list[dict[str, Any]] = []
    for _ in range(5):
        response = client(server).chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
        choice = response.choices[0]
        if choice.finish_reason != "tool_calls":
            break
        assert choice.message.content is None and len(choice.message.tool_calls) == 1
        messages.append(choice.message)
        for call in choice.message.tool_calls:
            assert call.function.name == "get-weather"
            arguments = json.loads(call.function.arguments)
            calls.append(arguments)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(weather(**arguments))})
    assert calls == [{"city": "Oslo"}, {"city": "Lima"}]
    assert choice.finish_reason == "stop" and choice.message.content == "nine"
    agent = response.model_extra["agent"]
    seen = agent["steps"][0]["observation"]
    assert seen["stdout"] == "8 dict\n"
    assert [c["arguments"] for c in seen["host_calls"]] == calls
    assert all(c["error"] is None for c in seen["host_calls"])
    prompt = engine.requests[0].prompt
    assert "] get_weather(city: str)\nCurrent temperature of a city.\n\nArgs:\n    city: city name" in prompt
    assert 'codeact_host_calls_total{outcome="ok"} 2.0' in httpx.get(server.url + "/metrics").text


def test_the_openai_tool_loop_streaming(server: LiveServer) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Sum the temperatures."}]
    answered = 0
    for _ in range(5):
        stream = client(server).chat.completions.create(
            model=MODEL, messages=messages, tools=[WEATHER_TOOL], stream=True
        )
        tool_calls: dict[int, dict[str, Any]] = {}
        content, finish = "", None
        for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            content += delta.content or ""
            for piece in delta.tool_calls or []:
                slot = tool_calls.setdefault(
                    piece.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                slot["id"] += piece.id or ""
                slot["function"]["name"] += piece.function.name or ""
                slot["function"]["arguments"] += piece.function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        if finish != "tool_calls":
            break
        messages.append({"role": "assistant", "content": None, "tool_calls": list(tool_calls.values())})
        for call in tool_calls.values():
            result = weather(**json.loads(call["function"]["arguments"]))
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)})
            answered += 1
    assert answered == 2
    assert finish == "stop"
    assert "8 dict" in content and "nine" in content


def test_langchain_bind_tools(server: LiveServer) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool("get-weather")
    def get_weather(city: str) -> str:
        """Current temperature of a city."""
        return json.dumps(weather(city))

    model = ChatOpenAI(model=MODEL, base_url=server.url + "/v1/agent", api_key="unused", max_retries=0)
    bound = model.bind_tools([get_weather])
    history: list[Any] = [HumanMessage("Sum the temperatures of Oslo and Lima.")]
    for _ in range(5):
        reply = bound.invoke(history)
        history.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            history.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
    assert [m.tool_call_id for m in history if isinstance(m, ToolMessage)] and reply.content == "nine"
    assert sum(isinstance(m, ToolMessage) for m in history) == 2


def test_a_result_that_is_not_json_arrives_as_text_and_unknown_ids_are_refused(
    server: LiveServer, engine: ScriptedEngine
) -> None:
    engine._turns.clear()  # noqa: SLF001 - this test scripts its own turns
    engine.enqueue("<execute>\nprint(repr(get_weather('Rome')))\n</execute>", "<solution>ok</solution>")
    first = client(server).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Rome?"}], tools=[WEATHER_TOOL]
    )
    call = first.choices[0].message.tool_calls[0]
    history = [{"role": "user", "content": "Rome?"}, first.choices[0].message]
    with pytest.raises(openai.BadRequestError) as refused:
        client(server).chat.completions.create(
            model=MODEL,
            messages=[*history, {"role": "tool", "tool_call_id": "call_unknown", "content": "x"}],
            tools=[WEATHER_TOOL],
        )
    assert refused.value.body["param"] == "messages" and "call_unknown" in refused.value.body["message"]
    done = client(server).chat.completions.create(
        model=MODEL,
        messages=[*history, {"role": "tool", "tool_call_id": call.id, "content": "warm, 24 C"}],
        tools=[WEATHER_TOOL],
    )
    assert done.model_extra["agent"]["steps"][0]["observation"]["stdout"] == "'warm, 24 C'\n"
