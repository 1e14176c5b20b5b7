"""The remote engine reading a backend's stream, against canned SSE bodies (no model).

The real backend path is tests/models/engine/test_engine_remote.py (our own server on the
embedded model); these cover what a real backend will not produce on demand: a stop string
split across chunks, a backend-reported stop, a malformed event, a mid-stream error.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from models.engine.api import ContextOverflowError, EngineError, GenerationRequest, GenerationResult, generate_text
from models.engine.remote import RemoteEngine


def sse(*events: object) -> bytes:
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
    return "".join(lines).encode() + b"data: [DONE]\n\n"


def chunk(text: str, finish: str | None = None, stop_reason: str | None = None) -> dict:
    return {"choices": [{"text": text, "finish_reason": finish, "stop_reason": stop_reason}]}


def backend(body: bytes, *, tokenize: bool = False) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m", "max_model_len": 64}]})
        if request.url.path == "/tokenize" and tokenize:
            return httpx.Response(200, json={"count": len(json.loads(request.content)["prompt"].split())})
        if request.url.path == "/v1/completions":
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        return httpx.Response(404, json={"error": {"message": "no such route"}})

    return httpx.MockTransport(handle)


def generate(body: bytes, request: GenerationRequest, *, tokenize: bool = False) -> GenerationResult:
    engine = RemoteEngine("http://backend", transport=backend(body, tokenize=tokenize))
    try:
        return asyncio.run(generate_text(engine, request))
    finally:
        engine.close()


def test_a_stop_string_split_across_chunks_ends_the_text() -> None:
    body = sse(chunk("print(1)<"), chunk("/exec"), chunk("ute> never shown"), chunk("", "length"))
    result = generate(body, GenerationRequest(prompt="p", max_tokens=20, stop=("</execute>",)))
    assert result.text == "print(1)" and result.stop_string == "</execute>"
    assert result.finish_reason == "stop" and result.completion_tokens == 3


def test_a_stop_the_backend_reports_is_named_and_the_text_kept_whole() -> None:
    body = sse(chunk("42 <"), chunk("", "stop", stop_reason="</solution>"))
    result = generate(body, GenerationRequest(prompt="p", max_tokens=20, stop=("</solution>",)))
    assert result.text == "42 <" and result.stop_string == "</solution>" and result.finish_reason == "stop"


def test_a_malformed_event_is_an_engine_error() -> None:
    body = sse(chunk("fine"), "{broken")
    with pytest.raises(EngineError, match="broke its stream: malformed stream event"):
        generate(body, GenerationRequest(prompt="p", max_tokens=20))


def test_an_error_event_mid_stream_is_an_engine_error() -> None:
    body = sse(chunk("fine"), {"error": {"message": "out of memory"}})
    with pytest.raises(EngineError, match="failed mid-stream: out of memory"):
        generate(body, GenerationRequest(prompt="p", max_tokens=20))


def test_exact_counts_refuse_an_over_long_prompt_at_submit() -> None:
    engine = RemoteEngine("http://backend", transport=backend(sse(), tokenize=True))
    try:
        assert engine.info.token_counts == "exact" and engine.info.context_length == 64
        with pytest.raises(ContextOverflowError):
            engine.submit(GenerationRequest(prompt="word " * 60, max_tokens=10))
    finally:
        engine.close()
