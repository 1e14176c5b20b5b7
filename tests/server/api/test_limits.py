"""Request limits over real HTTP: body size (413), message count and max_tokens (400)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    settings = Settings(max_request_bytes=LIMIT, max_messages=3, max_tokens_limit=100, sandbox_pool_size=0)
    engine = ScriptedEngine(responder=lambda _prompt: "<solution>ok</solution>")
    with LiveServer(create_app(settings, engine)) as live:
        yield live


def chat_body(content: str = "hi", n_messages: int = 1, **extra: object) -> dict:
    messages = [{"role": "user", "content": content}] * n_messages
    return {"model": "scripted", "messages": messages, **extra}


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/agent"])
def test_oversized_body_is_413_before_parsing(server: LiveServer, path: str) -> None:
    body = chat_body("x" * (LIMIT + 1))
    error = assert_error(httpx.post(server.url + path, json=body), 413, "request_too_large")
    assert str(LIMIT) in error["message"] and "max_request_bytes" in error["message"]


def test_oversized_chunked_body_is_413_too(server: LiveServer) -> None:
    payload = json.dumps(chat_body("y" * (3 * LIMIT))).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    # A generous timeout: the 413 comes after the server has read the body; under load that took
    # longer than httpx's 5 s default once (a ReadTimeout, not a wrong answer).
    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert_error(response, 413, "request_too_large")
    small = json.dumps(chat_body("fits")).encode()
    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=iter([small[:10], small[10:]]),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text


def test_body_at_the_limit_is_served(server: LiveServer) -> None:
    body = chat_body("z" * 100)
    body["messages"][0]["content"] += "z" * (LIMIT - len(json.dumps(body).encode()))
    payload = json.dumps(body).encode()
    assert len(payload) == LIMIT
    headers = {"content-type": "application/json"}
    assert httpx.post(server.url + "/v1/chat/completions", content=payload, headers=headers).status_code == 200
    response = httpx.post(server.url + "/v1/chat/completions", content=payload + b" ", headers=headers)
    assert response.status_code == 413


def test_the_openai_client_sees_413_as_an_api_error(server: LiveServer) -> None:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "q" * 2 * LIMIT}])
        assert caught.value.status_code == 413
        with pytest.raises(openai.BadRequestError, match="max_messages"):
            client.chat.completions.create(model="scripted", messages=chat_body(n_messages=4)["messages"])
        with pytest.raises(openai.BadRequestError, match="max_tokens_limit"):
            client.chat.completions.create(model="scripted", messages=chat_body()["messages"], max_tokens=101)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/agent", "/v1/agent/chat/completions"])
def test_message_count_and_max_tokens_limits(server: LiveServer, path: str) -> None:
    error = assert_error(httpx.post(server.url + path, json=chat_body(n_messages=4)), 400, "too_many_messages")
    assert error["param"] == "messages" and "4 messages" in error["message"]
    for field in ("max_tokens", "max_completion_tokens"):
        response = httpx.post(server.url + path, json=chat_body(**{field: 101}))
        error = assert_error(response, 400, "max_tokens_too_large")
        assert error["param"] == field and "100" in error["message"]
    assert httpx.post(server.url + path, json=chat_body(n_messages=3, max_tokens=100), timeout=60).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/v1/chat/completions",
            b'{"model": "scripted", "messages": [{"role": "user", "content": "a \\ud800"}]}',
            "messages[0].content",
        ),
        (
            "/v1/agent",
            b'{"model": "scripted", "messages": [{"role": "user", "content": "\\udc80"}]}',
            "messages[0].content",
        ),
        ("/v1/completions", b'{"model": "scripted", "prompt": "x \\udfff y"}', "prompt"),
    ],
)
def test_a_lone_surrogate_is_a_400_naming_the_field(server: LiveServer, path: str, body: bytes, param: str) -> None:
    """Issue 34: no encoder downstream takes such text; it made chat and agent answers 500s."""
    response = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"})
    error = assert_error(response, 400, "invalid_unicode")
    assert error["param"] == param and "lone surrogate" in error["message"]


def test_an_escaped_surrogate_pair_is_text_like_any_other(server: LiveServer) -> None:
    body = b'{"model": "scripted", "messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}'
    response = httpx.post(
        server.url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text


def test_malformed_json_keeps_its_own_400(server: LiveServer) -> None:
    response = httpx.post(
        server.url + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_defaults_admit_an_m3tooleval_sized_agent_request() -> None:
    """M3ToolEval sends ~70 KB of tool sources with each task; the default must take it."""
    settings = Settings(sandbox_pool_size=0)
    assert settings.max_request_bytes >= 4 * 1024 * 1024
    filler = "\n".join(f"_TABLE_{i} = {list(range(40))!r}" for i in range(600))  # ~90 KB of Python
    tool = {
        "name": "lookup",
        "signature": "lookup(key: str) -> str",
        "description": "Look a key up.",
        "source": filler + "\ndef lookup(key):\n    return key.upper()\n",
    }
    assert len(json.dumps(tool)) > 70_000
    engine = ScriptedEngine(["<execute>print(lookup('ok'))</execute>", "<solution>OK</solution>"])
    with LiveServer(create_app(settings, engine)) as live:
        body = {**chat_body("Use the tool."), "tools": [tool], "execution_timeout": 20}
        response = httpx.post(live.url + "/v1/agent", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["agent"]["steps"][0]["observation"]["stdout"] == "OK\n"


def test_the_document_publishes_the_configured_limits(server: LiveServer) -> None:
    """The caps are settings: the OpenAPI document carries this server's values, so a body
    the document calls valid is not then refused for its max_tokens or message count."""
    schemas = httpx.get(server.url + "/openapi.json").json()["components"]["schemas"]
    fields = [
        ("ChatCompletionRequest", "max_tokens"),
        ("ChatCompletionRequest", "max_completion_tokens"),
        ("AgentRequest", "max_tokens"),
        ("CompletionRequest", "max_tokens"),
        ("ResponsesRequest", "max_output_tokens"),
    ]
    for model, field in fields:
        (integer,) = [b for b in schemas[model]["properties"][field]["anyOf"] if b.get("type") == "integer"]
        assert integer["maximum"] == 100, (model, field)
    for model in ("ChatCompletionRequest", "AgentRequest"):
        assert schemas[model]["properties"]["messages"]["maxItems"] == 3, model
    body = {"model": "scripted", "prompt": "hi"}
    assert httpx.post(server.url + "/v1/completions", json={**body, "max_tokens": 100}, timeout=60).status_code == 200
    error = assert_error(
        httpx.post(server.url + "/v1/completions", json={**body, "max_tokens": 101}), 400, "max_tokens_too_large"
    )
    assert error["param"] == "max_tokens"
