"""The OpenAPI document lists the error codes each route can answer, and a 405 names every
method of its path; real uvicorn around the scripted engine (no model needed)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    app = create_app(Settings(sandbox_pool_size=0), ScriptedEngine(), close_engine=True)
    with LiveServer(app) as live:
        yield live


@pytest.fixture(scope="module")
def document(server: LiveServer) -> dict:
    return httpx.get(server.url + "/openapi.json").json()


def codes(document: dict, path: str, method: str) -> set[str]:
    return set(document["paths"][path][method]["responses"])


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        ("/v1/chat/completions", "post", {"400", "401", "403", "404", "413", "422", "500", "503"}),
        ("/v1/completions", "post", {"400", "401", "403", "404", "413", "422", "500", "503"}),
        ("/v1/responses", "post", {"400", "401", "403", "404", "413", "422", "500", "503"}),
        ("/v1/responses/{response_id}", "get", {"401", "403", "404"}),
        ("/v1/responses/{response_id}", "delete", {"401", "403", "404"}),
        ("/v1/responses/{response_id}/input_items", "get", {"401", "403", "404"}),
        ("/v1/models", "get", {"401", "403"}),
        ("/health", "get", {"403"}),
        ("/v1/agent", "post", {"400", "401", "403", "404", "409", "413", "422", "429", "500", "503"}),
        ("/v1/agent/sessions/{session_id}", "get", {"401", "403", "404"}),
        ("/v1/agent/sessions/{session_id}", "delete", {"401", "403", "404", "409"}),
    ],
)
def test_routes_document_their_error_codes(document: dict, path: str, method: str, expected: set[str]) -> None:
    assert expected <= codes(document, path, method)


def test_every_documented_error_has_the_openai_error_shape(document: dict) -> None:
    schema = document["components"]["schemas"]["ErrorResponse"]
    assert schema["required"] == ["error"]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for code, answer in operation["responses"].items():
                if code.startswith(("4", "5")) and code != "422":
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorResponse"), (path, method, code)


@pytest.mark.parametrize(
    ("path", "allow"),
    [("/v1/agent/sessions/abc", "DELETE, GET"), ("/v1/responses/resp_1", "DELETE, GET")],
)
def test_405_allow_lists_every_method_of_the_path(server: LiveServer, path: str, allow: str) -> None:
    r = httpx.put(server.url + path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.json()["error"]["type"] == "invalid_request_error"


STREAMING = [
    ("/v1/chat/completions", "post"),
    ("/v1/completions", "post"),
    ("/v1/responses", "post"),
    ("/v1/agent", "post"),
    ("/v1/agent/chat/completions", "post"),
]


@pytest.mark.parametrize(("path", "method"), STREAMING)
def test_streaming_routes_document_the_event_stream(document: dict, path: str, method: str) -> None:
    content = document["paths"][path][method]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/event-stream"}


@pytest.mark.parametrize("path", ["/v1/agent", "/v1/agent/chat/completions", "/v1/chat/completions"])
def test_a_streamed_answer_has_the_documented_content_type(server: LiveServer, path: str) -> None:
    body = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", server.url + path, json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == "text/event-stream"
        assert "data: [DONE]" in response.read().decode()


@pytest.mark.parametrize("stop", [False, 0, "x", ["x"], {"a": 1}])
@pytest.mark.parametrize("path", ["/v1/agent", "/v1/agent/chat/completions"])
def test_agent_refuses_any_stop_by_name(server: LiveServer, path: str, stop: object) -> None:
    """``stop: false`` was a 500 (ChatBody's stop validator called len() on it); every stop
    but null or [] is a 400 naming the field: the loop's own grammar ends its turns."""
    body = {"model": "scripted", "messages": [{"role": "tool"}], "max_turns": 1, "stop": stop}
    response = httpx.post(server.url + path, json=body, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "stop"


def test_the_schemas_say_what_parts_and_tools_are_read(document: dict, server: LiveServer) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["ContentPart"]["properties"]["type"]["enum"] == ["text"]
    tool = schemas["FunctionTool"]
    assert tool["properties"]["type"]["enum"] == ["function"] and "function" in tool["required"]
    assert {"type": "null"} not in tool["properties"]["function"]["anyOf"]
    image = {"model": "scripted", "messages": [{"role": "user", "content": [{"type": "image_url", "text": ""}]}]}
    response = httpx.post(server.url + "/v1/chat/completions", json=image)
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages[0].content[0]"
    search = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "web_search"}]}
    response = httpx.post(server.url + "/v1/chat/completions", json=search)
    assert response.status_code == 400 and response.json()["error"]["param"] == "tools[0].type"
