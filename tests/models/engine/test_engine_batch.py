"""Several requests decoded in one batch, and prompt-lookup drafts (real llama.cpp, SmolLM2).

Greedy text is compared with one-request-at-a-time decoding over a short horizon: llama.cpp's
CPU kernels round differently for different batch shapes and KV layouts, so a near-tie far
into a long completion may flip either way (measured: the first flip came after ~50 tokens).
A wrong position, a stale KV cell or a mis-accepted draft garbles the text at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from models.engine.api import GenerationRequest, GenerationResult, generate_text
from models.engine.chat_format import render_chatml
from models.engine.llama.engine import LlamaEngine
from models.engine.llama.lookup import PromptLookup
from tests.conftest import embedded_model_path

TASKS = ("adds two numbers", "reverses a string", "sorts a list", "counts vowels")
CODE = (
    "def total_price(items):\n    result = 0\n    for item in items:\n"
    "        result += item.price * item.quantity\n    return result\n"
)


def _prompt(text: str) -> str:
    return render_chatml([{"role": "user", "content": text}]) + "<|im_start|>assistant\n"


def _engine(**options: int) -> LlamaEngine:
    return LlamaEngine(embedded_model_path(), model_id="m", ctx_size=2048, threads=1, **options)


@pytest.fixture(scope="module")
def alone() -> Iterator[LlamaEngine]:
    engine = _engine(parallel=1)
    yield engine
    engine.close()


async def _greedy(engine: LlamaEngine, prompt: str, max_tokens: int) -> GenerationResult:
    return await generate_text(engine, GenerationRequest(prompt=prompt, max_tokens=max_tokens, temperature=0))


# -- prompt lookup index (pure) -------------------------------------------------------------
def test_lookup_proposes_what_followed_the_latest_earlier_match() -> None:
    lookup = PromptLookup([1, 2, 3, 4, 9, 1, 2, 3, 5, 7, 1, 2])
    assert lookup.propose(3) == [3, 5, 7]  # "1 2" last seen before 3 5 7
    lookup.append(3)
    assert lookup.propose(2) == [5, 7]  # the 3-gram "1 2 3" wins over shorter ones
    assert lookup.propose(0) == []
    assert PromptLookup([4, 5, 6]).propose(4) == []  # the tail never occurred before


def test_lookup_prefers_longer_ngrams() -> None:
    lookup = PromptLookup([8, 2, 40, 9, 2, 50, 8, 2], max_ngram=2)
    assert lookup.propose(1) == [40]  # "8 2" -> 40, although "2" alone last led to 50


# -- batching -------------------------------------------------------------------------------
@pytest.mark.model
def test_concurrent_requests_share_decode_steps_and_match_decoding_alone(alone: LlamaEngine) -> None:
    prompts = [_prompt(f"Write a python function that {task}.") for task in TASKS]
    tokens = 12
    expected = [asyncio.run(_greedy(alone, prompt, tokens)).text for prompt in prompts]
    batched = _engine(parallel=4)
    try:

        async def together() -> list[GenerationResult]:
            return await asyncio.gather(*(_greedy(batched, prompt, tokens) for prompt in prompts))

        results = asyncio.run(together())
        steps = batched._scheduler.steps  # noqa: SLF001 - the property under test
    finally:
        batched.close()
    assert [r.text for r in results] == expected
    assert all(r.completion_tokens == tokens and r.finish_reason == "length" for r in results)
    # 4 x 12 tokens in far fewer than 48 decode steps: the requests really shared them.
    assert steps <= tokens + len(prompts) + 2


@pytest.mark.model
def test_cancelling_one_request_leaves_the_others_running() -> None:
    engine = _engine(parallel=3)

    async def scenario() -> tuple[list[GenerationResult], GenerationResult]:
        handles = [
            engine.submit(GenerationRequest(prompt=_prompt(f"Count to {n}."), max_tokens=24, temperature=0))
            for n in (5, 6, 7)
        ]

        async def drain(handle: object, stop_after: int | None) -> GenerationResult:
            seen = 0
            async for _ in handle.stream():  # type: ignore[attr-defined]
                seen += 1
                if stop_after is not None and seen >= stop_after:
                    handle.cancel()  # type: ignore[attr-defined]
            return handle.result  # type: ignore[attr-defined]

        first, cancelled, third = await asyncio.gather(
            drain(handles[0], None), drain(handles[1], 2), drain(handles[2], None)
        )
        return [first, third], cancelled

    try:
        finished, cancelled = asyncio.run(scenario())
        assert engine.queue_depth() == 0
    finally:
        engine.close()
    assert cancelled.finish_reason == "cancelled" and cancelled.completion_tokens < 24
    assert all(r.finish_reason in ("length", "stop") and r.completion_tokens > 2 for r in finished)


@pytest.mark.model
def test_requests_that_do_not_fit_the_shared_cells_together_wait_instead_of_failing() -> None:
    # 2 x (prompt + 600) cells exceed the 1024-cell context: the second must wait for the first.
    engine = LlamaEngine(embedded_model_path(), model_id="m", ctx_size=1024, threads=1, parallel=2)
    prompt = _prompt("Tell me a very long story about a lighthouse keeper.")

    async def both() -> list[GenerationResult]:
        requests = [GenerationRequest(prompt=prompt, max_tokens=600, temperature=0, stop=("\n",)) for _ in range(2)]
        return await asyncio.gather(*(generate_text(engine, r) for r in requests))

    try:
        first, second = asyncio.run(both())
    finally:
        engine.close()
    assert first.finish_reason == second.finish_reason == "stop"
    assert first.text and second.text
    assert second.queued_s >= first.total_s * 0.5  # it waited for the first to finish


# -- prompt-lookup speculative decoding ----------------------------------------------------
@pytest.mark.model
def test_lookup_drafts_are_accepted_and_greedy_text_is_unchanged(alone: LlamaEngine) -> None:
    prompt = _prompt("Repeat this code exactly, then explain it:\n" + CODE)
    tokens = 40
    expected = asyncio.run(_greedy(alone, prompt, tokens))
    engine = _engine(parallel=1, lookup_draft_tokens=4)
    try:
        result = asyncio.run(_greedy(engine, prompt, tokens))
        steps = engine._scheduler.steps  # noqa: SLF001
    finally:
        engine.close()
    assert result.text == expected.text
    assert result.completion_tokens == tokens
    assert result.accepted_draft_tokens > 0 and result.draft_tokens >= result.accepted_draft_tokens
    # Every accepted draft saved one decode step (one more step read the prompt).
    assert steps <= tokens - result.accepted_draft_tokens + 1


@pytest.mark.model
def test_lookup_with_sampling_still_honours_stop_strings_and_length() -> None:
    engine = _engine(parallel=1, lookup_draft_tokens=6)
    prompt = _prompt("Repeat this code exactly:\n" + CODE)
    try:
        result = asyncio.run(
            generate_text(
                engine, GenerationRequest(prompt=prompt, max_tokens=30, temperature=0.8, seed=3, stop=("quantity",))
            )
        )
    finally:
        engine.close()
    assert "quantity" not in result.text
    assert result.completion_tokens <= 30
    assert result.finish_reason in ("stop", "length")
