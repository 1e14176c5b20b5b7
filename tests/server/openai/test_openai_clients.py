"""Other client libraries than the openai SDK, against real uvicorn and the embedded SmolLM2
on llama.cpp: LangChain's ``ChatOpenAI`` (chat completions and its Responses API mode) and
smolagents' ``ToolCallingAgent``.

Why these: they are what people point at an OpenAI-compatible server, and each builds its
requests its own way (LangChain sends ``strict`` tools, ``parallel_tool_calls`` and named
``tool_choice``; smolagents sends ``tool_choice: "required"``, stop strings and streams with
``stream_options``). The model is far too small to choose well, so the tests assert what
the server guarantees: every call is well-formed and each library reads it back whole.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field
from smolagents import ActionStep, OpenAIServerModel, Tool, ToolCallingAgent
from smolagents.utils import AgentParsingError, AgentToolCallError

from tests.live_server import LiveServer

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


class Person(BaseModel):
    """A person described by name and age."""

    name: str = Field(max_length=20)
    age: int


def chat_model(server: LiveServer, *, responses_api: bool = False) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL,
        base_url=server.url + "/v1",
        api_key="unused",
        max_retries=0,
        temperature=0,
        max_tokens=64,
        use_responses_api=responses_api,
    )


def assert_weather_calls(message: AIMessage) -> None:
    """LangChain parsed every call: known name, arguments that match the schema, an id."""
    assert message.tool_calls and not message.invalid_tool_calls
    for call in message.tool_calls:
        assert call["name"] == "get_weather"
        assert set(call["args"]) == {"city"} and isinstance(call["args"]["city"], str)
        assert call["id"].startswith("call_")


# --- LangChain ---------------------------------------------------------------------------


@pytest.mark.parametrize("responses_api", [False, True], ids=["chat", "responses"])
def test_langchain_bind_tools_gets_well_formed_calls_and_a_round_trip(server: LiveServer, responses_api: bool) -> None:
    llm = chat_model(server, responses_api=responses_api)
    required = llm.bind_tools([get_weather], tool_choice="required").invoke("What is the weather in Paris?")
    assert_weather_calls(required)

    named = llm.bind_tools([get_weather], tool_choice="get_weather", strict=True, parallel_tool_calls=False)
    call = named.invoke("What is the weather in Paris?")
    assert_weather_calls(call)
    assert len(call.tool_calls) == 1  # parallel_tool_calls=False was honoured

    # The tool's answer goes back as a ToolMessage; the server must accept the whole history.
    history = [
        HumanMessage("What is the weather in Paris?"),
        call,
        ToolMessage(get_weather.invoke(call.tool_calls[0]["args"]), tool_call_id=call.tool_calls[0]["id"]),
    ]
    follow_up = llm.bind_tools([get_weather]).invoke(history)
    assert follow_up.response_metadata.get("finish_reason", "stop") in {"stop", "length", "tool_calls"}
    assert follow_up.tool_calls or follow_up.content
    assert not follow_up.invalid_tool_calls


def test_langchain_streamed_tool_call_arrives_whole(server: LiveServer) -> None:
    llm = chat_model(server).bind_tools([get_weather], tool_choice="get_weather", parallel_tool_calls=False)
    chunks = list(llm.stream("What is the weather in Paris?"))
    assert len(chunks) > 2  # streamed in pieces, not one blob
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    assert_weather_calls(whole)
    assert len(whole.tool_calls) == 1


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_langchain_with_structured_output_returns_the_pydantic_model(server: LiveServer, method: str) -> None:
    llm = chat_model(server).with_structured_output(Person, method=method, include_raw=True)
    out = llm.invoke("Describe a person as JSON with their name and age.")
    assert out["parsing_error"] is None
    person = out["parsed"]
    assert isinstance(person, Person) and len(person.name) <= 20


def test_langchain_structured_output_on_the_responses_api(server: LiveServer) -> None:
    llm = chat_model(server, responses_api=True).with_structured_output(Person, strict=True)
    person = llm.invoke("Describe a person as JSON with their name and age.")
    assert isinstance(person, Person)


# --- smolagents --------------------------------------------------------------------------


class WeatherTool(Tool):
    name = "get_weather"
    description = "Current weather in a city."
    inputs = {"city": {"type": "string", "description": "the city's name"}}
    output_type = "string"

    def forward(self, city: str) -> str:
        return f"sunny in {city}"


@pytest.fixture
def agent_model(server: LiveServer) -> Iterator[OpenAIServerModel]:
    model = OpenAIServerModel(
        model_id=MODEL, api_base=server.url + "/v1", api_key="unused", max_tokens=96, temperature=0
    )
    yield model
    model.client.close()


@pytest.mark.slow  # smolagents' own system prompt is ~1,200 tokens per step
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_smolagents_tool_calling_agent_makes_well_formed_calls(agent_model: OpenAIServerModel, stream: bool) -> None:
    agent = ToolCallingAgent(
        tools=[WeatherTool()], model=agent_model, max_steps=1, verbosity_level=0, stream_outputs=stream
    )
    agent.run("Call the get_weather tool for Paris.")
    steps = [s for s in agent.memory.steps if isinstance(s, ActionStep)]
    calls = [c for s in steps for c in (s.tool_calls or [])]
    assert calls, "the agent made no tool call"
    schemas = {"get_weather": {"city"}, "final_answer": {"answer"}}
    for call in calls:
        assert call.name in schemas
        assert isinstance(call.arguments, dict) and set(call.arguments) == schemas[call.name]
        assert call.id.startswith("call_")
    # A malformed call would show as a parsing error or a tool-call error in the agent's memory.
    for step in steps:
        assert not isinstance(step.error, AgentParsingError | AgentToolCallError), step.error
    # Greedy decoding on this prompt calls the tool: its result came back as an observation.
    assert any(c.name == "get_weather" for c in calls)
    assert any("sunny in Paris" in str(s.observations) for s in steps)
