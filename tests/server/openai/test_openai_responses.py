"""The Responses API through the real openai client's ``client.responses``, real uvicorn and
the embedded SmolLM2 on llama.cpp."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.live_server import LiveServer

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 40}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def test_text_input_with_instructions(client: openai.OpenAI, real_engine) -> None:
    response = client.responses.create(
        model=MODEL,
        instructions="Answer in one short sentence.",
        input="Write one sentence about the sea.",
        max_output_tokens=16,
        temperature=0,
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status in {"completed", "incomplete"}
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.output_text.strip()
    assert 0 < response.usage.output_tokens <= 16
    prompt = (
        "<|im_start|>system\nAnswer in one short sentence.<|im_end|>\n"
        "<|im_start|>user\nWrite one sentence about the sea.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert response.usage.input_tokens == real_engine.count_tokens(prompt)
    if response.status == "incomplete":
        assert response.incomplete_details.reason == "max_output_tokens"


def test_item_input_and_stream_events(client: openai.OpenAI) -> None:
    args = {
        "model": MODEL,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Name a colour."}]}],
        "max_output_tokens": 12,
        "temperature": 0,
    }
    whole = client.responses.create(**args).output_text
    events = list(client.responses.create(stream=True, **args))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert kinds[-1] in {"response.completed", "response.incomplete"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == whole == events[-1].response.output_text


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI, real_engine) -> None:
    first = client.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=8, temperature=0)
    second = client.responses.create(
        model=MODEL, input="What is my name?", previous_response_id=first.id, max_output_tokens=8, temperature=0
    )
    assert second.previous_response_id == first.id
    prompt = (
        "<|im_start|>user\nMy name is Ada.<|im_end|>\n"
        f"<|im_start|>assistant\n{first.output_text}<|im_end|>\n"
        "<|im_start|>user\nWhat is my name?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert second.usage.input_tokens == real_engine.count_tokens(prompt)
    assert client.responses.retrieve(first.id).output_text == first.output_text


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="Hello", max_output_tokens=2, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model=MODEL, input="Hi", previous_response_id=response.id, max_output_tokens=2)
    assert info.value.body["param"] == "previous_response_id"


def test_delete_removes_a_stored_response(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="Hello", max_output_tokens=2)
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_function_tool_round_trip(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model=MODEL,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_output_tokens=60,
        temperature=0,
    )
    assert [item.type for item in first.output] == ["function_call"]
    call = first.output[0]
    assert call.name == "get_weather" and call.call_id.startswith("call_")
    arguments = json.loads(call.arguments)
    assert set(arguments) == {"city"} and isinstance(arguments["city"], str)
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees and sunny"}],
        tools=[WEATHER],
        tool_choice="none",
        max_output_tokens=16,
        temperature=0,
    )
    assert second.output[0].type == "message" and second.output_text


def test_function_call_streams_as_argument_events(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model=MODEL,
            input="What is the weather in Paris?",
            tools=[WEATHER],
            tool_choice={"type": "function", "name": "get_weather"},
            parallel_tool_calls=False,
            max_output_tokens=60,
            temperature=0,
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert "response.output_text.delta" not in kinds
    assert kinds[2] == "response.output_item.added" and events[2].item.type == "function_call"
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(pieces) > 1  # streamed as generated
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == "".join(pieces)
    assert set(json.loads(done.arguments)) == {"city"}
    assert kinds[-2:] == ["response.output_item.done", "response.completed"]
    final = events[-1].response.output[0]
    assert final.type == "function_call" and final.id == done.item_id == events[2].item.id
    assert final.arguments == done.arguments


def test_json_schema_text_format(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string", "maxLength": 20}},
        "required": ["colour"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model=MODEL,
        input="Name a colour as JSON.",
        text={"format": {"type": "json_schema", "name": "colour", "schema": schema, "strict": True}},
        max_output_tokens=40,
        temperature=0,
    )
    assert set(json.loads(response.output_text)) == {"colour"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"background": True, "store": False}, "store"),  # background runs must be stored
        ({"truncation": "auto"}, "truncation"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0]"),
    ],
)
def test_unsupported_fields_are_a_400_naming_them(server: LiveServer, fields: dict, param: str) -> None:
    body = {"model": MODEL, "input": "Hello", "max_output_tokens": 2, **fields}
    r = httpx.post(server.url + "/v1/responses", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_input_items_lists_the_request_input_newest_first(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=2)
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[
            {"role": "user", "content": "Hello."},
            {"role": "user", "content": [{"type": "input_text", "text": "What is my name?"}]},
        ],
        max_output_tokens=2,
    )
    items = client.responses.input_items.list(second.id)
    assert [item.content[0].text for item in items.data] == ["What is my name?", "Hello."]
    assert all(item.id.startswith("msg_") and item.role == "user" for item in items.data)
    ascending = client.responses.input_items.list(second.id, order="asc")
    assert [item.id for item in ascending.data] == [item.id for item in reversed(items.data)]
    only = client.responses.input_items.list(first.id)
    assert [item.content[0].text for item in only.data] == ["My name is Ada."]
