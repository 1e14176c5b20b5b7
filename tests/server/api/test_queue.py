"""The bounded queue in front of the model, over real HTTP (scripted model, same queue code)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

LONG_TURN = " ".join(f"word{i}" for i in range(400))


def chat_body(stream: bool) -> dict:
    return {
        "model": "scripted",
        "messages": [{"role": "user", "content": "talk"}],
        "stream": stream,
    }


def first_words(lines: Iterator[str]) -> None:
    """Read until the model's first words: the request has left the queue and is running.

    The first chunk (the assistant role) is sent before the owner thread takes the request,
    so it alone does not say the queue slot is free again.
    """
    for line in lines:
        if line.startswith("data: ") and '"content"' in line:
            return
    raise AssertionError("the stream ended before any content")


def test_full_queue_answers_503_at_once_and_never_interrupts_the_running_request() -> None:
    engine = ScriptedEngine([LONG_TURN] * 3 + ["short answer"], max_queue=1, token_delay_s=0.01)
    with (
        LiveServer(create_app(Settings(sandbox_pool_size=0), engine)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        url = "/v1/chat/completions"
        with client.stream("POST", url, json=chat_body(True)) as running:
            lines = running.iter_lines()
            first_words(lines)
            with client.stream("POST", url, json=chat_body(True)) as waiting:
                assert waiting.status_code == 200
                deadline = time.monotonic() + 5
                while client.get("/health").json()["queue_depth"] < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                started = time.monotonic()
                refused = client.post(url, json=chat_body(False))
                assert time.monotonic() - started < 2.0  # refused at once, not after a wait
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "1"
                assert refused.json()["error"]["code"] == "queue_full"
                # The running request was not interrupted: it streams to its end.
                text = "".join(line for line in lines if line.startswith("data: ") and "content" in line)
                assert "word399" in text
        deadline = time.monotonic() + 10
        while client.get("/health").json()["queue_depth"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.get("/health").json()["queue_depth"] == 0
        served = client.post(url, json=chat_body(False)).json()
        assert served["choices"][0]["message"]["content"]


def test_a_cancelled_waiting_request_is_dropped_from_the_queue() -> None:
    engine = ScriptedEngine([LONG_TURN, "never played", "next"], max_queue=2, token_delay_s=0.005)
    with (
        LiveServer(create_app(Settings(sandbox_pool_size=0), engine)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        url = "/v1/chat/completions"
        with client.stream("POST", url, json=chat_body(True)) as running:
            lines = running.iter_lines()
            first_words(lines)
            with client.stream("POST", url, json=chat_body(True)) as waiting:
                assert waiting.status_code == 200  # queued; the client leaves before it runs
            for _ in lines:
                pass
        reply = client.post(url, json=chat_body(False)).json()
        # The abandoned request never reached the model: the next one got the next turn.
        assert reply["choices"][0]["message"]["content"] == "never played"
        assert len(engine.requests) == 2
