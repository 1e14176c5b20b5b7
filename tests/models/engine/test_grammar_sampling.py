"""The lazy grammar check must change speed, never output.

With greedy decoding the fast path (sample unconstrained, check that one token, mask the
vocabulary only on rejection) must give exactly the text of llama-cpp-python's naive path
(grammar inside the sampler chain, full mask every token), on the real embedded model: first
the engine's own per-request sampler (``TokenSampler``) driven on a ``Llama``'s context, so
both paths read the same logits, then the whole engine.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import llama_cpp
import pytest

from models.engine.api import EngineError, GenerationRequest, generate_text
from models.engine.chat_format import render_chatml
from models.engine.llama.grammar import GrammarCache, GrammarStats
from models.engine.llama.sampler import TokenSampler
from server.agent.actions import ACTION_GRAMMAR
from tests.conftest import embedded_model_path

pytestmark = pytest.mark.model

SYSTEM = (
    "You can run Python in an interactive environment. Put code inside <execute></execute> "
    "tags and the final answer inside <solution></solution> tags."
)
TASKS = (
    "What is the sum of the squares of the integers from 1 to 100?",
    "Print the first ten Fibonacci numbers.",
    "What is the capital of France?",
)
MAX_TOKENS = 48  # enough to cross the 300-character thinking bound on some prompts


@pytest.fixture(scope="module")
def llama() -> Iterator[llama_cpp.Llama]:
    # One thread: on a shared 2-core machine two spinning llama.cpp threads stall each other.
    model = llama_cpp.Llama(str(embedded_model_path()), n_ctx=2048, n_threads=1, n_gpu_layers=0, verbose=False)
    yield model
    model.close()


def _prompt(task: str) -> str:
    return render_chatml([{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}])


def _take(llama: llama_cpp.Llama, tokens: Iterator[int]) -> list[int]:
    vocab = llama._model.vocab  # noqa: SLF001
    out: list[int] = []
    try:
        for token in tokens:
            if llama_cpp.llama_vocab_is_eog(vocab, token) or len(out) >= MAX_TOKENS:
                break
            out.append(token)
    finally:
        tokens.close()  # type: ignore[attr-defined]
    return out


def _naive(llama: llama_cpp.Llama, prompt: str) -> list[int]:
    llama.reset()
    grammar = llama_cpp.LlamaGrammar.from_string(ACTION_GRAMMAR, verbose=False)
    tokens = llama.tokenize(prompt.encode(), add_bos=True, special=True)
    return _take(llama, llama.generate(tokens, temp=0.0, top_k=1, min_p=0.0, repeat_penalty=1.0, grammar=grammar))


def _fast(llama: llama_cpp.Llama, cache: GrammarCache, prompt: str, stats: GrammarStats) -> list[int]:
    """Greedy tokens from the engine's sampler (lazy grammar) on ``llama``'s context; adds to ``stats``."""
    llama.reset()
    sampler = TokenSampler(
        llama.ctx, llama.n_vocab(), temperature=0.0, top_p=0.95, seed=None, grammar=cache.fresh(ACTION_GRAMMAR)
    )

    def tokens() -> Iterator[int]:
        pending = llama.tokenize(prompt.encode(), add_bos=True, special=True)
        while True:
            llama.eval(pending)
            token = sampler.sample(-1)
            yield token
            pending = [token]

    try:
        return _take(llama, tokens())
    finally:
        used = sampler.grammar_stats
        assert used is not None
        stats.fast += used.fast
        stats.slow += used.slow
        sampler.close()


@pytest.mark.slow
def test_greedy_fast_path_equals_naive_full_mask(llama: llama_cpp.Llama) -> None:
    cache = GrammarCache(llama._model.vocab)  # noqa: SLF001
    stats = GrammarStats()
    try:
        for task in TASKS:
            prompt = _prompt(task)
            assert _fast(llama, cache, prompt, stats) == _naive(llama, prompt), task
    finally:
        cache.close()
    # Both paths were exercised: most tokens pass the one-token check, some are rejected
    # (the 300-character thinking bound forces an action tag) and take the full mask.
    assert stats.fast > stats.slow > 0


def test_sampled_turns_respect_the_grammar(real_engine: object) -> None:
    request = GenerationRequest(
        prompt=_prompt(TASKS[1]), max_tokens=MAX_TOKENS, temperature=0.9, seed=7, grammar=ACTION_GRAMMAR
    )
    result = asyncio.run(generate_text(real_engine, request))  # type: ignore[arg-type]
    thought = re.split(r"<execute>|<solution>", result.text, maxsplit=1)[0]
    assert not re.search(r"<[es/]", thought), result.text
    assert len(thought) <= 300


def test_engine_greedy_with_grammar_matches_naive_path(llama: llama_cpp.Llama) -> None:
    # One batch slot: with several, another conversation's KV cells change the summation
    # order of attention, and a near-tie (this prompt's first token is one) may flip.
    from models.engine.llama.engine import LlamaEngine

    # Flash attention off, as ``Llama`` runs: the two attention kernels round differently, and
    # the engine's default (``auto``, as llama-server) may flip a near-tie against ``Llama``.
    engine = LlamaEngine(embedded_model_path(), model_id="m", ctx_size=2048, threads=1, parallel=1, flash_attn="off")
    prompt = _prompt(TASKS[0])
    request = GenerationRequest(prompt=prompt, max_tokens=MAX_TOKENS, temperature=0.0, grammar=ACTION_GRAMMAR)
    try:
        result = asyncio.run(generate_text(engine, request))
    finally:
        engine.close()
    expected = llama.detokenize(_naive(llama, prompt)).decode("utf-8", errors="replace")
    assert result.text == expected


def test_a_grammar_that_does_not_compile_is_an_engine_error(llama: llama_cpp.Llama) -> None:
    cache = GrammarCache(llama._model.vocab)  # noqa: SLF001
    try:
        with pytest.raises(EngineError):
            cache.fresh("root ::= ( unclosed")
    finally:
        cache.close()
