"""The agent hot path's shortcuts keep their exact behaviour (issue 8: per-turn overhead).

Coalesced SSE writes, the scripted model's incremental token count and the splitter's
single partial-tag check must be invisible to clients: same bytes, same counts, same
held-back text, and a client that leaves mid-stream still stops the run.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from models.engine.scripted import ScriptedEngine, _TokenCounter, fake_tokens
from server.agent.actions import _CLOSERS, _HOLD, _OPENERS, _partial_tag_suffix
from server.agent.steps import Action, Step, StepDone, TurnDelta
from server.agent.transcript import Transcript
from server.api.app import create_app
from server.api.routes.agent.chunks import merge_deltas
from server.api.streams.sse import ready_batches
from server.settings import Settings
from tests.live_server import LiveServer


async def _chunks(items: list[bytes], ready: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    for number, item in enumerate(items):
        if ready is not None and number == 2:
            await ready.wait()
        yield item


def test_ready_batches_keep_bytes_and_order_and_join_what_is_ready() -> None:
    async def main() -> list[bytes]:
        ready = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, ready.set)
        items = [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n", b"data: 4\n\n"]
        return [b"".join(batch) async for batch in ready_batches(_chunks(items, ready))]

    writes = asyncio.run(main())
    assert b"".join(writes) == b"data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
    assert len(writes) < 4  # what was ready together went out together
    assert writes[-1].endswith(b"data: 4\n\n")


def test_ready_batches_raise_the_producers_error_after_its_chunks() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        raise RuntimeError("boom")

    async def main() -> list[bytes]:
        seen = []
        with pytest.raises(RuntimeError, match="boom"):
            async for batch in ready_batches(failing()):
                seen.append(b"".join(batch))
        return seen

    assert asyncio.run(main()) == [b"data: 1\n\n"]


def test_closing_the_batched_stream_cancels_the_producer() -> None:
    async def main() -> bool:
        cancelled = asyncio.Event()

        async def endless() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"data: x\n\n"
                    await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        stream = ready_batches(endless())
        await stream.__anext__()
        started = time.monotonic()
        await asyncio.wait_for(stream.aclose(), timeout=5)  # a producer left running: hangs
        return cancelled.is_set() and time.monotonic() - started < 1

    assert asyncio.run(main())


def test_incremental_token_count_equals_a_full_count() -> None:
    rng = random.Random(8)
    alphabet = [" ", "\n", "\t", "a", "b", "<", ">", "/", "\u00a0", "\x1c"]
    counter = _TokenCounter()
    for _ in range(5000):
        base = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        if rng.random() < 0.7:
            assert counter.count(base) == len(fake_tokens(base))
        longer = base + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        assert counter.count(longer) == len(fake_tokens(longer)), (base, longer)


def test_partial_tag_suffix_matches_checking_every_length() -> None:
    def every_length(text: str, tags: tuple[str, ...]) -> int:
        for size in range(min(_HOLD, len(text)), 0, -1):
            if any(tag.startswith(text[-size:]) for tag in tags):
                return size
        return 0

    rng = random.Random(8)
    alphabet = list("<>/executsoln x")
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        for tags in (tuple(_OPENERS), _CLOSERS):
            assert _partial_tag_suffix(text, tags) == every_length(text, tags), text


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def server(engine: ScriptedEngine) -> Iterator[LiveServer]:
    settings = Settings(sandbox_pool_size=1, execution_timeout=30, max_sessions=3)
    with LiveServer(create_app(settings, engine)) as live:
        yield live


def test_leaving_an_agent_stream_stops_the_run_and_frees_the_session(
    server: LiveServer, engine: ScriptedEngine
) -> None:
    engine.enqueue("Wait.\n<execute>\nimport time\ntime.sleep(25)\n</execute>")
    body = {"model": "scripted", "messages": [{"role": "user", "content": "wait"}], "stream": True}
    session_id = None
    started = time.monotonic()
    with httpx.stream("POST", server.url + "/v1/agent", json=body, timeout=30) as response:
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            agent = json.loads(line[len("data: ") :])["agent"]
            session_id = session_id or agent.get("session_id")
            if agent.get("channel") == "code" and "sleep" in agent["text"]:
                break  # the code is running now: leave
    assert session_id is not None
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/v1/agent/sessions/{session_id}").json()["busy"]:
        assert time.monotonic() < deadline, "the run went on after its client left"
        time.sleep(0.05)
    assert time.monotonic() - started < 20  # interrupted, not waited out
    deleted = httpx.delete(f"{server.url}/v1/agent/sessions/{session_id}")
    assert deleted.json()["deleted"] is True
    assert httpx.get(f"{server.url}/v1/agent/sessions/{session_id}").status_code == 404


def test_merged_deltas_render_as_the_pieces_did() -> None:
    events = [
        TurnDelta(0, "thought", "Let "),
        TurnDelta(0, "thought", "me "),
        TurnDelta(0, "code", "x = 1"),
        TurnDelta(0, "code", "\nx"),
        StepDone(Step(0, "Let me", Action("execute", "x = 1\nx"), "")),
        TurnDelta(1, "thought", "Done"),
        TurnDelta(1, "answer", "1"),
    ]
    merged = merge_deltas(events)
    assert [type(e).__name__ for e in merged] == ["TurnDelta", "TurnDelta", "StepDone", "TurnDelta", "TurnDelta"]
    assert merged[0] == TurnDelta(0, "thought", "Let me ")
    one_by_one, joined = Transcript(), Transcript()
    assert "".join(one_by_one.render(e) for e in events) == "".join(joined.render(e) for e in merged)
