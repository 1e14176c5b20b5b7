"""End to end with a batching engine: real uvicorn, the real openai client, SmolLM2 on
llama.cpp with ``parallel=2``, the real sandbox. Concurrent chat completions and concurrent
agent runs must all finish correctly while sharing decode steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import openai
import pytest

from models.engine.llama.engine import LlamaEngine
from server.api.app import create_app
from server.settings import Settings
from tests.conftest import embedded_model_path
from tests.live_server import LiveServer
from tests.server.agent.test_agent_real import RUNS, assert_really_executed, assert_well_formed, request_args

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    engine = LlamaEngine(embedded_model_path(), model_id=MODEL, ctx_size=4096, threads=1, parallel=2)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine: LlamaEngine) -> Iterator[LiveServer]:
    app = create_app(Settings(sandbox_pool_size=2), engine, close_engine=False)
    with LiveServer(app) as live:
        yield live


def test_health_reports_the_batch_width(server: LiveServer) -> None:
    assert httpx.get(server.url + "/health").json()["parallel_sequences"] == 2


def test_concurrent_streams_finish_with_real_usage_and_share_decode_steps(
    server: LiveServer, engine: LlamaEngine
) -> None:
    tokens = 24

    async def one(client: openai.AsyncOpenAI, topic: str) -> tuple[str, int]:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Write about {topic}."}],
            max_tokens=tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, completion = "", 0
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                completion = chunk.usage.completion_tokens
        return text, completion

    async def both() -> list[tuple[str, int]]:
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as client:
            return await asyncio.gather(one(client, "the sea"), one(client, "mountains"))

    steps_before = engine._scheduler.steps  # noqa: SLF001 - the property under test
    results = asyncio.run(both())
    steps = engine._scheduler.steps - steps_before  # noqa: SLF001
    assert all(text and completion == tokens for text, completion in results)
    # 2 x 24 tokens took clearly fewer than 48 steps: the two requests were decoded together.
    assert steps < 2 * tokens - tokens // 2
    assert engine.queue_depth() == 0


def test_concurrent_agent_runs_are_well_formed_and_their_code_really_ran(server: LiveServer) -> None:
    async def run(client: openai.AsyncOpenAI, task: dict) -> openai.types.chat.ChatCompletion:
        return await client.chat.completions.create(**request_args(task))

    async def both() -> list[openai.types.chat.ChatCompletion]:
        async with openai.AsyncOpenAI(base_url=server.url + "/v1/agent", api_key="x", max_retries=0) as client:
            return await asyncio.gather(*(run(client, task) for task in RUNS))

    kinds = []
    for reply in asyncio.run(both()):
        agent = reply.model_extra["agent"]
        assert reply.usage.completion_tokens == sum(s["tokens"]["completion"] for s in agent["steps"])
        assert_well_formed(agent["steps"])
        session = httpx.get(f"{server.url}/v1/agent/sessions/{agent['session_id']}").json()
        assert_really_executed(session, agent["steps"])
        kinds += [s["action"]["type"] for s in agent["steps"]]
    assert "execute" in kinds
