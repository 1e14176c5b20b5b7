"""End to end: real uvicorn, the real openai client and httpx, the embedded model on llama.cpp."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.live_server import LiveServer

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"
HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]


def test_health_reports_model_backend_and_queue(server: LiveServer) -> None:
    body = httpx.get(server.url + "/health").json()
    assert body["status"] == "ok"
    assert body["model"] == MODEL
    assert body["backend"] == "cpu"
    assert body["offloaded_layers"] == 0
    assert body["total_layers"] == 30  # SmolLM2-135M has 30 blocks
    assert body["queue_depth"] == 0


def test_models_list_has_openai_shape(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data][0] == MODEL
    assert all(m.object == "model" for m in models.data)


def test_non_stream_completion_with_real_usage(client: openai.OpenAI, real_engine) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=24, temperature=0, seed=1)
    assert reply.object == "chat.completion"
    text = reply.choices[0].message.content
    assert text and text.strip()
    assert reply.choices[0].finish_reason in {"stop", "length"}
    prompt = "<|im_start|>user\nWrite one sentence about the sea.<|im_end|>\n<|im_start|>assistant\n"
    assert reply.usage.prompt_tokens == real_engine.count_tokens(prompt)
    assert 0 < reply.usage.completion_tokens <= 24
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_stream_matches_non_stream_and_ends_with_done(client: openai.OpenAI, server) -> None:
    args = {"model": MODEL, "messages": HELLO, "max_tokens": 24, "temperature": 0, "seed": 1}
    whole = client.chat.completions.create(**args).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **args))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json={**args, "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert r.headers["content-type"].startswith("text/event-stream")


def test_stream_usage_when_asked(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 8


def test_max_tokens_is_honoured(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me a long story about a dragon."}],
        max_tokens=5,
        temperature=0,
    )
    assert reply.usage.completion_tokens == 5
    assert reply.choices[0].finish_reason == "length"


def test_stop_string_ends_output_before_it(client: openai.OpenAI) -> None:
    args = {"model": MODEL, "messages": HELLO, "max_tokens": 24, "temperature": 0, "seed": 1}
    full = client.chat.completions.create(**args).choices[0].message.content
    words = full.split()
    assert len(words) >= 3, full
    stop = " " + words[2]
    cut = client.chat.completions.create(stop=[stop], **args)
    assert cut.choices[0].message.content == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-17", messages=HELLO, max_tokens=4)
    assert info.value.body["code"] == "model_not_found"


def test_malformed_json_is_400_in_openai_shape(server: LiveServer) -> None:
    r = httpx.post(
        server.url + "/v1/chat/completions",
        content=b'{"model": "x", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_wrong_types_are_422(server: LiveServer) -> None:
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": MODEL, "messages": "hello", "max_tokens": "many"},
    )
    assert r.status_code == 422
    assert "messages" in r.json()["error"]["message"]


def test_context_overflow_is_400_with_both_numbers(client: openai.OpenAI, real_engine) -> None:
    n_ctx = real_engine.info.context_length
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=n_ctx)
    message = info.value.body["message"]
    assert info.value.body["code"] == "context_length_exceeded"
    assert f"max_tokens ({n_ctx})" in message and f"{n_ctx} tokens" in message
    long_prompt = [{"role": "user", "content": "word " * (n_ctx + 10)}]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=long_prompt, max_tokens=4)


def test_client_disconnect_mid_stream_frees_the_model(server: LiveServer, client) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count from 1 to 2000, one number per line."}],
        "max_tokens": 1500,
        "temperature": 0,
        "stream": True,
    }
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as r:
        for n, _ in enumerate(r.iter_lines()):
            if n > 5:
                break  # leave mid-stream: the connection closes here
    deadline = time.monotonic() + 5
    while httpx.get(server.url + "/health").json()["queue_depth"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(server.url + "/health").json()["queue_depth"] == 0
    reply = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4)
    assert reply.usage.completion_tokens >= 1
