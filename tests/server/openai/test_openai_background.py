"""Responses background mode: runs that outlive their connection, polled, resumed, cancelled.

First ``BackgroundRun`` on hand-made event streams (replay, resume, bounds, shutdown), then
the real thing: the official openai client's ``responses.create(background=True)``,
``retrieve``, ``retrieve(stream=True, starting_after=N)`` and ``cancel`` against real uvicorn,
the embedded SmolLM2 on llama.cpp and, for the code interpreter, a real sandbox worker.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest

from server.api.app import create_app
from server.api.errors import APIError
from server.api.streams.background import BackgroundRuns
from server.api.streams.event_formats import split_events
from server.settings import Settings
from tests.live_server import LiveServer

MODEL = "smollm2-135m"
LONG = "Count from 1 to 3000, one number per line."


# --- the run, on hand-made events ---------------------------------------------------------


def sse(kind: str, number: int, **fields: object) -> bytes:
    payload = {"type": kind, "sequence_number": number, **fields}
    return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()


async def script(n_deltas: int, gate: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """created, n deltas (waiting at ``gate`` after the first), completed."""
    yield sse("response.created", 0, response={"id": "resp_1", "status": "in_progress"})
    for i in range(n_deltas):
        yield sse("response.output_text.delta", i + 1, delta=str(i))
        if gate is not None and i == 0:
            await gate.wait()
    yield sse("response.completed", n_deltas + 1, response={"id": "resp_1", "status": "completed"})


async def read(stream: AsyncIterator[bytes]) -> list[int]:
    return [event.payload["sequence_number"] async for chunk in stream for event in split_events(chunk)]


def test_split_events_reads_several_events_in_one_chunk() -> None:
    events = split_events(sse("a", 0) + b"id: 7\n" + sse("b", 1, x=1))
    assert [(event.payload["type"], event.event_id) for event in events] == [("a", None), ("b", 7)]
    assert b"".join(event.data for event in events) == sse("a", 0) + b"id: 7\n" + sse("b", 1, x=1)


def test_a_run_replays_from_any_point_and_follows_live() -> None:
    async def main() -> None:
        ended: list[str] = []
        runs = BackgroundRuns(max_running=2, max_events=100)
        gate = asyncio.Event()
        run = await runs.start(script(5, gate), lambda response, outcome: ended.append(outcome))
        assert run.id == "resp_1" and run.response["status"] == "in_progress" and run.running
        follower = asyncio.ensure_future(read(run.follow(0)))  # resumes after event 0, then live
        await asyncio.sleep(0.01)
        gate.set()
        assert await follower == [1, 2, 3, 4, 5, 6]
        assert await read(run.follow(None)) == [0, 1, 2, 3, 4, 5, 6]  # a late reader gets it all
        assert await read(run.follow(4)) == [5, 6]
        assert ended == ["completed"] and run.response["status"] == "completed"

    asyncio.run(main())


def test_resuming_before_the_kept_window_is_a_400_naming_the_setting() -> None:
    async def main() -> None:
        runs = BackgroundRuns(max_running=1, max_events=3)
        run = await runs.start(script(5), lambda *_: None)
        assert await read(run.follow(None)) == [4, 5, 6]  # only the last three are kept
        assert await read(run.follow(3)) == [4, 5, 6]
        with pytest.raises(APIError) as caught:
            run.check_resumable(2)
        assert caught.value.param == "starting_after" and "background_max_events" in caught.value.message

    asyncio.run(main())


def test_too_many_running_is_a_429_and_shutdown_fails_what_still_runs() -> None:
    async def main() -> None:
        ended: list[tuple[str, object]] = []
        runs = BackgroundRuns(max_running=1, max_events=10)
        run = await runs.start(script(3, asyncio.Event()), lambda r, outcome: ended.append((outcome, r["error"])))
        with pytest.raises(APIError) as caught:
            await runs.start(script(1), lambda *_: None)
        assert caught.value.status == 429 and "background_max_running" in caught.value.message
        await runs.close()
        assert run.response["status"] == "failed" and not run.running
        assert ended == [("failed", {"code": "server_shutdown", "message": run.response["error"]["message"]})]
        assert await read(run.follow(None)) == [0, 1]  # what it did before is still there

    asyncio.run(main())


def test_cancel_stops_the_producer_and_says_cancelled() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            yield sse("response.created", 0, response={"id": "resp_c", "status": "in_progress"})
            await asyncio.Event().wait()
            yield b""  # pragma: no cover - never reached
        finally:
            closed.set()

    async def main() -> None:
        runs = BackgroundRuns(max_running=1, max_events=10)
        run = await runs.start(endless(), lambda *_: None)
        await run.cancel()
        assert closed.is_set() and run.response["status"] == "cancelled" and run.response["error"] is None
        assert runs.running() == 0

    asyncio.run(main())


# --- the real thing -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(real_engine) -> Iterator[LiveServer]:
    settings = Settings(sandbox_pool_size=1, execution_timeout=20, background_max_running=2)
    with LiveServer(create_app(settings, real_engine, close_engine=False)) as live:
        yield live


def wait_for(client: openai.OpenAI, response_id: str, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while True:
        response = client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress") or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def queue_drains(server: LiveServer) -> bool:
    deadline = time.monotonic() + 10
    while httpx.get(server.url + "/health").json()["queue_depth"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return httpx.get(server.url + "/health").json()["queue_depth"] == 0


@pytest.mark.model
def test_a_background_response_completes_with_no_client_and_is_polled(client: openai.OpenAI) -> None:
    started = client.responses.create(
        model=MODEL, input="Say hello.", background=True, temperature=0, max_output_tokens=24
    )
    assert started.status in ("queued", "in_progress") and started.background is True
    done = wait_for(client, started.id)
    assert done.status in ("completed", "incomplete") and done.output_text
    assert done.usage.output_tokens > 0


@pytest.mark.model
def test_a_cut_stream_resumes_with_exactly_the_missed_events(client: openai.OpenAI) -> None:
    stream = client.responses.create(
        model=MODEL, input="Write a short poem about the sea.", background=True, stream=True,
        temperature=0, max_output_tokens=48,
    )  # fmt: skip
    seen = []
    for event in stream:
        seen.append(event)
        if len(seen) == 4:
            break
    stream.close()  # the connection goes; the run does not
    response_id = seen[0].response.id
    resumed = list(client.responses.retrieve(response_id, stream=True, starting_after=seen[-1].sequence_number))
    numbers = [e.sequence_number for e in seen + resumed]
    assert numbers == list(range(len(numbers)))  # nothing missed, nothing twice, in order
    assert resumed[-1].type in ("response.completed", "response.incomplete")
    replay = list(client.responses.retrieve(response_id, stream=True))
    assert [e.model_dump() for e in replay] == [e.model_dump() for e in seen + resumed]
    text = "".join(e.delta for e in seen + resumed if e.type == "response.output_text.delta")
    assert text == wait_for(client, response_id).output_text


@pytest.mark.model
def test_cancel_stops_generation(client: openai.OpenAI, server: LiveServer) -> None:
    started = client.responses.create(model=MODEL, input=LONG, background=True, temperature=0, max_output_tokens=1500)
    cancelled = client.responses.cancel(started.id)
    assert cancelled.status == "cancelled"
    assert queue_drains(server)  # the generation stopped: nothing left in the engine's queue
    assert client.responses.retrieve(started.id).status == "cancelled"
    metrics = httpx.get(server.url + "/metrics").text
    assert 'codeact_background_runs_total{outcome="cancelled"}' in metrics


@pytest.mark.model
def test_a_code_interpreter_run_completes_in_the_background(client: openai.OpenAI) -> None:
    started = client.responses.create(
        model=MODEL, input="Use the <execute> tag to run: print(7 * 6)", background=True,
        tools=[{"type": "code_interpreter", "container": {"type": "auto"}}], temperature=0,
        max_output_tokens=160, max_tool_calls=1,
    )  # fmt: skip
    done = wait_for(client, started.id)
    assert done.status in ("completed", "incomplete"), done.error
    assert [item.type for item in done.output if item.type == "code_interpreter_call"]
    assert done.output[-1].type == "message"


def test_what_background_mode_refuses_is_named(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="x", background=True, store=False)
    assert caught.value.body["param"] == "store"
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_missing")


@pytest.mark.model
def test_only_background_responses_stream_again_or_cancel(client: openai.OpenAI, server: LiveServer) -> None:
    plain = client.responses.create(model=MODEL, input="Hi", max_output_tokens=4)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.cancel(plain.id)
    assert caught.value.body["param"] == "response_id"
    answer = httpx.get(f"{server.url}/v1/responses/{plain.id}", params={"stream": "true"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "stream"


@pytest.mark.model
def test_more_background_runs_than_the_limit_get_429(client: openai.OpenAI, server: LiveServer) -> None:
    ids = [
        client.responses.create(model=MODEL, input=LONG, background=True, max_output_tokens=1500).id for _ in range(2)
    ]
    try:
        with pytest.raises(openai.RateLimitError) as caught:
            client.responses.create(model=MODEL, input=LONG, background=True, max_output_tokens=1500)
        assert "background_max_running" in str(caught.value)
    finally:
        for response_id in ids:
            client.responses.cancel(response_id)
    assert queue_drains(server)


def test_the_running_limit_counts_each_owner_on_its_own() -> None:
    async def main() -> None:
        runs = BackgroundRuns(max_running=1, max_events=10)
        gate = asyncio.Event()
        await runs.start(script(3, gate), lambda *_: None, owner="key-a")
        with pytest.raises(APIError):
            runs.check_capacity("key-a")
        runs.check_capacity("key-b")  # another key still has its own
        assert runs.running("key-a") == 1 and runs.running("key-b") == 0 and runs.running() == 1
        gate.set()
        await runs.close()

    asyncio.run(main())


@pytest.mark.model
def test_the_limit_is_per_api_key(real_engine) -> None:
    settings = Settings(sandbox_pool_size=0, background_max_running=1, api_key=["key-a", "key-b"])
    with LiveServer(create_app(settings, real_engine, close_engine=False)) as live:
        a = openai.OpenAI(base_url=live.url + "/v1", api_key="key-a", max_retries=0)
        b = openai.OpenAI(base_url=live.url + "/v1", api_key="key-b", max_retries=0)
        first = a.responses.create(model=MODEL, input=LONG, background=True, max_output_tokens=1500)
        with pytest.raises(openai.RateLimitError):
            a.responses.create(model=MODEL, input=LONG, background=True, max_output_tokens=1500)
        other = b.responses.create(model=MODEL, input="Hi", background=True, max_output_tokens=4)
        assert other.status == "in_progress"
        a.responses.cancel(first.id)
        assert wait_for(b, other.id).status in ("completed", "incomplete")
