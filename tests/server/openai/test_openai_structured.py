"""Structured outputs and honest refusals on /v1/chat/completions, through the real openai
client, real uvicorn and the embedded SmolLM2 on llama.cpp (grammar-constrained sampling)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel

from models.engine.json_grammar import SchemaError, check_schema, json_schema_grammar
from tests.live_server import LiveServer

MODEL = "smollm2-135m"
PERSON_PROMPT = [{"role": "user", "content": "Describe a person as JSON: their name and age."}]
PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "role": {"type": "string", "enum": ["admin", "user"]},
    },
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}


class Person(BaseModel):
    name: str
    age: int


# --- the schema check, without a model -------------------------------------------------


def test_check_schema_names_the_first_keyword_it_cannot_enforce() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}
    with pytest.raises(SchemaError) as info:
        check_schema(schema, "s")
    assert info.value.path == "s.properties.age.minimum"
    with pytest.raises(SchemaError, match="anyOf"):
        check_schema({"oneOf": [{"type": "string"}, {"type": "integer"}]})
    with pytest.raises(SchemaError, match="format 'email'"):
        check_schema({"type": "string", "format": "email"})
    with pytest.raises(SchemaError, match="local references"):
        check_schema({"$ref": "https://example.com/s.json"})


def test_grammar_requires_escaped_control_characters_in_strings() -> None:
    grammar = json_schema_grammar({"type": "object", "properties": {"a": {"type": "string"}}})
    char_rule = next(line for line in grammar.splitlines() if line.startswith("char ::="))
    assert r"\x00-\x1F" in char_rule  # a raw newline inside a string is not JSON


# --- structured outputs, real model ----------------------------------------------------


@pytest.mark.model
def test_json_schema_answer_parses_and_matches(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=PERSON_PROMPT,
        max_tokens=80,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True},
        },
    )
    assert reply.choices[0].finish_reason == "stop"
    answer = json.loads(reply.choices[0].message.content)
    assert set(answer) == {"name", "age", "role"}
    assert isinstance(answer["name"], str) and len(answer["name"]) <= 20
    assert isinstance(answer["age"], int) and not isinstance(answer["age"], bool)
    assert answer["role"] in {"admin", "user"}


@pytest.mark.model
def test_sdk_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    reply = client.chat.completions.parse(
        model=MODEL, messages=PERSON_PROMPT, max_tokens=80, temperature=0, response_format=Person
    )
    person = reply.choices[0].message.parsed
    assert isinstance(person, Person)
    assert isinstance(person.age, int) and person.name


@pytest.mark.model
def test_json_object_mode_answers_a_json_object(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=PERSON_PROMPT,
        max_tokens=120,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert reply.choices[0].finish_reason == "stop", reply.choices[0].message.content
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


@pytest.mark.model
def test_json_schema_streamed_is_the_same_json(client: openai.OpenAI) -> None:
    args = {
        "model": MODEL,
        "messages": PERSON_PROMPT,
        "max_tokens": 80,
        "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON_SCHEMA}},
    }
    whole = client.chat.completions.create(**args).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **args))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert json.loads(whole)["role"] in {"admin", "user"}


def _bad_request(client: openai.OpenAI, **fields) -> dict:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**{"model": MODEL, "messages": PERSON_PROMPT, "max_tokens": 4, **fields})
    assert info.value.status_code == 400
    return info.value.body


@pytest.mark.model
def test_a_schema_keyword_the_grammar_cannot_enforce_is_a_400_naming_it(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 18}}}
    body = _bad_request(client, response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})
    assert body["param"] == "response_format.json_schema.schema.properties.age.minimum"
    assert body["code"] == "unsupported_schema"
    body = _bad_request(client, response_format={"type": "json_schema", "json_schema": {"name": "p"}})
    assert body["param"] == "response_format.json_schema.schema"
    body = _bad_request(client, response_format={"type": "regex"})
    assert body["param"] == "response_format.type"


# --- fields that would change the answer are refused, never dropped ---------------------


@pytest.mark.model
@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logit_bias": {"42": 5}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 1.0}, "frequency_penalty"),
        ({"extra_body": {"functions": [{"name": "f"}]}}, "functions"),
        ({"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_unsupported_fields_are_a_400_naming_them(client: openai.OpenAI, fields: dict, param: str) -> None:
    body = _bad_request(client, **fields)
    assert body["param"] == param
    assert param.split("[")[0] in body["message"]


@pytest.mark.model
def test_an_image_part_is_a_400_naming_it(client: openai.OpenAI) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    body = _bad_request(client, messages=[{"role": "user", "content": content}])
    assert body["param"] == "messages[0].content[1]"
    assert "image_url" in body["message"]


@pytest.mark.model
def test_neutral_values_and_labels_are_accepted(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=PERSON_PROMPT,
        max_tokens=4,
        n=1,
        logit_bias={},
        presence_penalty=0,
        frequency_penalty=0,
        user="someone",
        metadata={"run": "test"},
        store=False,
        modalities=["text"],
        response_format={"type": "text"},
        parallel_tool_calls=True,
        tool_choice="none",
    )
    assert reply.choices[0].message.content


@pytest.mark.model
def test_agent_route_refuses_n_above_one_too(server: LiveServer) -> None:
    r = httpx.post(server.url + "/v1/agent", json={"model": MODEL, "messages": PERSON_PROMPT, "n": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
