"""How every chat-style SSE stream ends (``server.api.streams.sse.openai_stream``).

The status line (200) leaves with the first chunk, so an engine that fails after it can
only say so inside the stream: one error event in OpenAI's shape, then ``[DONE]``. The
three streaming routes share that ending; each is checked here over real HTTP (uvicorn,
httpx) with a scripted model that runs out of turns midway.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterator

import httpx
import pytest

from models.engine.api import QueueFullError
from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.api.streams.sse import DONE, openai_stream
from server.settings import Settings
from tests.live_server import LiveServer

FAILED = {
    "error": {
        "message": "generation failed: the scripted model has no turn left to play",
        "type": "server_error",
        "code": "engine_error",
    }
}


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()  # no turns: the first generation fails on the engine's thread


@pytest.fixture
def server(engine: ScriptedEngine) -> Iterator[LiveServer]:
    with LiveServer(create_app(Settings(sandbox_pool_size=1, execution_timeout=20), engine)) as live:
        yield live


def _events(server: LiveServer, path: str, body: dict[str, object]) -> list[str]:
    """The ``data:`` payloads of one streamed request, in order."""
    with httpx.stream("POST", server.url + path, json={"model": "scripted", "stream": True, **body}, timeout=60) as r:
        assert r.status_code == 200
        return [line[len("data: ") :] for line in r.iter_lines() if line.startswith("data: ")]


def test_chat_stream_that_fails_ends_with_an_error_event_then_done(server: LiveServer) -> None:
    events = _events(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    first, error, done = events
    assert json.loads(first)["choices"][0]["delta"] == {"role": "assistant"}
    assert json.loads(error) == FAILED and done == "[DONE]"


def test_completions_stream_that_fails_ends_the_same_way(server: LiveServer) -> None:
    events = _events(server, "/v1/completions", {"prompt": "hi"})
    assert [json.loads(events[0]), events[1]] == [FAILED, "[DONE]"]


def test_agent_stream_that_fails_midway_ends_the_same_way(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>\nprint(6 * 7)\n</execute>")  # the second turn finds no script
    events = _events(server, "/v1/agent", {"messages": [{"role": "user", "content": "6*7?"}]})
    assert json.loads(events[-2]) == FAILED and events[-1] == "[DONE]"
    agent = [json.loads(e)["agent"] for e in events[:-2]]
    assert agent[0]["type"] == "session"
    step = next(a["step"] for a in agent if a["type"] == "step")
    assert step["observation"]["stdout"] == "42\n"  # the run got that far before the engine failed
    assert all(a["type"] != "done" for a in agent)


def _collect(stream: AsyncGenerator[bytes, None]) -> list[bytes]:
    async def collect() -> list[bytes]:
        return [chunk async for chunk in stream]

    return asyncio.run(collect())


def test_ending_maps_the_engine_error_by_type() -> None:
    async def busy() -> AsyncGenerator[bytes, None]:
        yield b"data: 1\n\n"
        raise QueueFullError(1, retry_after_s=2)

    chunks = _collect(openai_stream(busy()))
    assert chunks[0] == b"data: 1\n\n" and chunks[-1] == DONE
    error = json.loads(chunks[1].removeprefix(b"data: "))["error"]
    assert (error["type"], error["code"]) == ("server_busy", "queue_full")


def test_a_stream_without_error_just_gets_done() -> None:
    async def fine() -> AsyncGenerator[bytes, None]:
        yield b"data: a\n\n"

    assert _collect(openai_stream(fine())) == [b"data: a\n\n", DONE]


def test_other_errors_are_not_swallowed() -> None:
    async def broken() -> AsyncGenerator[bytes, None]:
        yield b"data: a\n\n"
        raise RuntimeError("our bug")

    with pytest.raises(RuntimeError, match="our bug"):
        _collect(openai_stream(broken()))


def test_closing_the_stream_runs_the_inner_cleanup_at_once() -> None:
    """A client that leaves closes the outer stream; the route's own ``finally`` (cancel the
    generation) must run then, not whenever the inner generator is garbage-collected."""
    cleaned: list[str] = []

    async def endless() -> AsyncGenerator[bytes, None]:
        try:
            while True:
                yield b"data: x\n\n"
        finally:
            cleaned.append("cancelled")

    async def leave_early() -> None:
        stream = openai_stream(endless())
        assert await anext(stream) == b"data: x\n\n"
        await stream.aclose()
        assert cleaned == ["cancelled"]

    asyncio.run(leave_early())
