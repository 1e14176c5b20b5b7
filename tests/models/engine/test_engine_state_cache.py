"""Interleaved conversations keep their KV state (real llama.cpp, the embedded model).

With one batch slot the conversations take turns in the same KV sequence, so the state
cache must save and restore them; with two slots each keeps its own sequence.
"""

from __future__ import annotations

import asyncio

import pytest

from models.engine.api import GenerationRequest, generate_text
from models.engine.chat_format import render_chatml
from models.engine.llama.engine import LlamaEngine
from tests.conftest import embedded_model_path

pytestmark = pytest.mark.model


def conversation(topic: str, turns: int) -> list[str]:
    messages = [{"role": "system", "content": f"You are an expert on {topic}. " * 8}]
    prompts = []
    for k in range(turns):
        messages.append({"role": "user", "content": f"Tell me fact number {k} about {topic}."})
        prompts.append(render_chatml(messages))
        messages.append({"role": "assistant", "content": f"Fact {k}: {topic} is interesting."})
    return prompts


async def interleave(engine: LlamaEngine) -> list[tuple[int, int, str]]:
    a, b = conversation("volcanoes", 3), conversation("glaciers", 3)
    seen = []
    for k in range(3):
        for prompt in (a[k], b[k]):
            result = await generate_text(engine, GenerationRequest(prompt=prompt, max_tokens=6, temperature=0))
            seen.append((result.prompt_tokens, result.cached_prompt_tokens, result.text))
    return seen


def test_interleaved_conversations_restore_their_prefix_with_identical_output() -> None:
    cached = LlamaEngine(embedded_model_path(), model_id="m", ctx_size=1024, threads=1, parallel=1)
    plain = LlamaEngine(embedded_model_path(), model_id="m", ctx_size=1024, threads=1, parallel=1, state_cache_mb=0)
    try:
        with_cache = asyncio.run(interleave(cached))
        without = asyncio.run(interleave(plain))
        assert cached._states is not None and cached._states.saves >= 2 and cached._states.restores >= 2
    finally:
        cached.close()
        plain.close()
    # Same greedy text either way: a restored state is the state it was.
    assert [t for *_, t in with_cache] == [t for *_, t in without]
    # From the second round on, each conversation finds its own previous prompt cached.
    previous = {0: with_cache[0][0], 1: with_cache[1][0]}
    for index, (prompt_tokens, reused, _) in enumerate(with_cache[2:], start=2):
        assert reused >= previous[index % 2] - 1
        previous[index % 2] = prompt_tokens
    # Without the cache the other conversation's turn evicted everything but a shared head.
    assert all(reused < 10 for _, reused, _ in without[2:])


def test_with_a_slot_each_interleaved_conversations_keep_their_own_sequence() -> None:
    engine = LlamaEngine(embedded_model_path(), model_id="m", ctx_size=1024, threads=1, parallel=2, state_cache_mb=0)
    try:
        seen = asyncio.run(interleave(engine))
    finally:
        engine.close()
    previous = {0: seen[0][0], 1: seen[1][0]}
    for index, (prompt_tokens, reused, _) in enumerate(seen[2:], start=2):
        assert reused >= previous[index % 2] - 1
        previous[index % 2] = prompt_tokens


def test_a_later_turn_replaces_the_snapshots_of_its_earlier_turns() -> None:
    engine = LlamaEngine(embedded_model_path(), model_id="m", ctx_size=1024, threads=1, parallel=1)
    try:
        asyncio.run(interleave(engine))
        states = engine._states  # noqa: SLF001 - the property under test
        assert states is not None and states.saves >= 4
        keys = list(states._snapshots)  # noqa: SLF001
    finally:
        engine.close()
    # Two conversations: at most one snapshot each, none a prefix of another.
    assert len(keys) <= 2
    assert not any(a != b and b[: len(a)] == a for a in keys for b in keys)
