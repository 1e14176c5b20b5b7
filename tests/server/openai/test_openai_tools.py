"""Function calling on /v1/chat/completions: the real openai client, real uvicorn, the
embedded SmolLM2 on llama.cpp. The model is far too small to choose tools wisely, so the
tests assert what the grammar guarantees: well-formed calls in OpenAI's shapes."""

from __future__ import annotations

import json

import openai
import pytest
from openai import pydantic_function_tool
from pydantic import BaseModel, Field

from models.engine.json_grammar import FunctionSchema, tool_call_grammar
from server.openai.schemas import ChatCompletionRequest
from server.openai.tool_calls import AnswerSplitter, may_become_call, parse_tool_calls, plan_tools, prompt_messages

MODEL = "smollm2-135m"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time now in a timezone",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "maxLength": 40}},
            "required": ["timezone"],
            "additionalProperties": False,
        },
    },
}


def assert_weather_call(call) -> None:
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city", "unit"}
    assert isinstance(arguments["city"], str) and len(arguments["city"]) <= 40
    assert arguments["unit"] in {"celsius", "fahrenheit"}


# --- without a model --------------------------------------------------------------------


def test_parse_tool_calls_reads_call_blocks_whole_or_cut() -> None:
    text = (
        '<tool_call>\n{"name": "f", "arguments": {"a": "}\\"", "b": [1, {}]}}\n</tool_call>\n'
        '<tool_call>\n{"name": "g", "arguments": {}}\n</tool_call>'
    )
    parsed = parse_tool_calls(text)
    assert parsed.complete
    assert [c["function"]["name"] for c in parsed.calls] == ["f", "g"]
    assert json.loads(parsed.calls[0]["function"]["arguments"]) == {"a": '}"', "b": [1, {}]}
    assert len({c["id"] for c in parsed.calls}) == 2
    cut = parse_tool_calls('<tool_call>\n{"name": "f", "arguments": {"a": 1')  # max_tokens
    assert not cut.complete and cut.calls[0]["function"]["arguments"] == '{"a": 1'
    assert parse_tool_calls('<tool_call>\n{"name": "f", "argu') is None  # no call yet: text
    assert parse_tool_calls("The answer is 4.") is None
    assert may_become_call(" <tool") and may_become_call("<tool_call>\n{")
    assert not may_become_call("Hello")


def test_calls_fed_piece_by_piece_give_the_same_calls_and_events_in_order() -> None:
    text = (
        '<tool_call>\n{"name": "f", "arguments":  {"a": [1, 2]} }\n</tool_call>\n'
        '<tool_call>\n{"name": "g", "arguments": {}}\n</tool_call>'
    )
    splitter = AnswerSplitter(plan=object())  # type: ignore[arg-type]
    events = []
    for char in text:
        shown, changes = splitter.feed(char)
        assert shown == ""
        events += changes
    assert splitter.calls.complete and splitter.leftover() == ""
    assert [(e.kind, e.index) for e in events if e.kind != "arguments"] == [
        ("start", 0),
        ("end", 0),
        ("start", 1),
        ("end", 1),
    ]
    assert "".join(e.text for e in events if e.index == 0) == '{"a": [1, 2]}'
    text_splitter = AnswerSplitter(plan=object())  # type: ignore[arg-type]
    assert text_splitter.feed(" ") == ("", [])
    assert text_splitter.feed("Hi") == (" Hi", [])


def test_history_renders_calls_and_tool_results_and_lists_tools() -> None:
    body = ChatCompletionRequest.model_validate(
        {
            "model": MODEL,
            "tools": [WEATHER],
            "messages": [
                {"role": "system", "content": "Be brief."},
                *ASK,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"},
            ],
        }
    )
    plan = plan_tools(body)
    assert plan is not None and plan.allow_text  # tool_choice defaults to auto
    messages = prompt_messages(body.messages, plan)
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith("Be brief.\n\n# Tools")
    assert '"name": "get_weather"' in messages[0]["content"]
    assert messages[2] == {
        "role": "assistant",
        "content": '<tool_call>\n{"name": "get_weather", "arguments": '
        '{"city": "Paris", "unit": "celsius"}}\n</tool_call>',
    }
    assert messages[3] == {"role": "user", "content": "<tool_response>\n18 degrees, sunny\n</tool_response>"}


# --- real model ---------------------------------------------------------------------------


@pytest.mark.model
def test_required_returns_a_well_formed_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER, CLOCK], tool_choice="required", max_tokens=80, temperature=0
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.function.name in {"get_weather", "get_time"}
        json.loads(call.function.arguments)


@pytest.mark.model
def test_named_choice_calls_that_function_with_valid_arguments(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[CLOCK, WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        max_tokens=80,
        temperature=0,
    )
    calls = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls"
    assert len(calls) == 1
    assert_weather_call(calls[0])


@pytest.mark.model
def test_stream_gives_the_same_call_in_deltas(client: openai.OpenAI) -> None:
    args = {
        "model": MODEL,
        "messages": ASK,
        "tools": [WEATHER],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_tokens": 80,
        "temperature": 0,
    }
    whole = client.chat.completions.create(**args).choices[0].message.tool_calls[0]
    chunks = list(client.chat.completions.create(stream=True, **args))
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].index == 0 and deltas[0].id.startswith("call_") and deltas[0].type == "function"
    assert deltas[0].function.name == "get_weather" and deltas[0].function.arguments == ""
    assert len(deltas) > 2  # the arguments came in pieces, as they were generated
    assert all(d.index == 0 and d.id is None for d in deltas[1:])
    assert "".join(d.function.arguments or "" for d in deltas) == whole.function.arguments
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.model
def test_a_call_cut_by_max_tokens_is_length_with_its_arguments_so_far(client: openai.OpenAI) -> None:
    args = {
        "model": MODEL,
        "messages": ASK,
        "tools": [WEATHER],
        "tool_choice": "required",
        "max_tokens": 26,  # the call's head takes about 18 tokens, the whole call 37
        "temperature": 0,
    }
    whole = client.chat.completions.create(**args).choices[0]
    assert whole.finish_reason == "length"
    call = whole.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.function.arguments.startswith("{")
    chunks = list(client.chat.completions.create(stream=True, **args))
    streamed = "".join(
        d.function.arguments or "" for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])
    )
    assert streamed == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.model
def test_auto_answers_either_text_or_a_valid_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], max_tokens=40, temperature=0)
    message = reply.choices[0].message
    if message.tool_calls:
        assert reply.choices[0].finish_reason == "tool_calls"
        assert_weather_call(message.tool_calls[0])
    else:
        assert message.content and not message.content.startswith("<")
        assert reply.choices[0].finish_reason in {"stop", "length"}


@pytest.mark.model
def test_tool_round_trip(client: openai.OpenAI, real_engine) -> None:
    first = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=80, temperature=0
    )
    call = first.choices[0].message.tool_calls[0]
    history = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    second = client.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER], tool_choice="none", max_tokens=24, temperature=0
    )
    assert second.choices[0].message.content
    assert second.choices[0].message.tool_calls is None
    # the model read the call and its result: the prompt is exactly the rendered history
    arguments = json.loads(call.function.arguments)
    prompt = (
        "<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n"
        + json.dumps({"name": "get_weather", "arguments": arguments})
        + "\n</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n18 degrees and sunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert second.usage.prompt_tokens == real_engine.count_tokens(prompt)


@pytest.mark.model
def test_unknown_named_tool_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "nope"}},
            max_tokens=4,
        )
    assert info.value.body["param"] == "tool_choice.function.name"


@pytest.mark.model
def test_a_parameters_keyword_the_grammar_cannot_enforce_is_a_400(client: openai.OpenAI) -> None:
    tool = json.loads(json.dumps(CLOCK))
    tool["function"]["parameters"]["properties"]["offset"] = {"type": "integer", "maximum": 14}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER, tool], tool_choice="required", max_tokens=4
        )
    assert info.value.body["param"] == "tools[1].function.parameters.properties.offset.maximum"


class Address(BaseModel):
    city: str = Field(max_length=30)
    zip_code: int | None


class ShipOrder(BaseModel):
    """Ship an order to an address."""

    item: str = Field(max_length=30)
    to: Address


def test_nested_definitions_of_two_tools_get_their_own_rules() -> None:
    other = {
        "type": "object",
        "properties": {"to": {"$ref": "#/$defs/Address"}},
        "required": ["to"],
        "$defs": {"Address": {"type": "object", "properties": {"planet": {"type": "string"}}, "required": ["planet"]}},
    }
    grammar = tool_call_grammar(
        [
            FunctionSchema("ship", pydantic_function_tool(ShipOrder)["function"]["parameters"]),
            FunctionSchema("fly", other),
        ],
        parallel=False,
        allow_text=False,
    )
    assert '"\\"zip_code\\""' in grammar and '"\\"planet\\""' in grammar
    assert "t0-Address ::=" in grammar and "t1-Address ::=" in grammar


@pytest.mark.model
def test_a_pydantic_tool_with_nested_models_gets_arguments_that_validate(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Ship a book to Paris."}],
        tools=[pydantic_function_tool(ShipOrder)],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=100,
        temperature=0,
    )
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "ShipOrder"
    order = ShipOrder.model_validate_json(call.function.arguments)
    assert isinstance(order.to, Address)


@pytest.mark.model
def test_auto_with_a_response_format_answers_a_call_or_matching_json(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 40}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        tools=[WEATHER],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        max_tokens=60,
        temperature=0,
    )
    message = reply.choices[0].message
    if message.tool_calls:
        assert_weather_call(message.tool_calls[0])
    else:
        assert reply.choices[0].finish_reason == "stop"
        assert set(json.loads(message.content)) == {"answer"}


def test_the_text_alternative_follows_the_response_format() -> None:
    grammar = tool_call_grammar(
        [FunctionSchema("f")], parallel=False, allow_text=True, text_schema={"type": "object"}, text_path="rf"
    )
    assert "root ::= tool-calls | text" in grammar and "text ::= answer" in grammar
    assert "[^<]" not in grammar  # free text is no longer an alternative
