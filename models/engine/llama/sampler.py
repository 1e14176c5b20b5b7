"""One request's token sampler, reading the logits of any output row of a batched decode.

``Llama.generate`` samples from the last row of a one-sequence batch. When several
conversations (and speculative draft tokens) share one ``llama_decode``, each request must
sample from *its* rows, with its own temperature, top-p, seed and grammar. The chain is the
one ``Llama.generate`` builds for our settings (neutral penalties dropped: they are no-ops),
so a greedy request picks the same tokens either way; a grammar is checked lazily by
``models.engine.llama.grammar.ConstrainedSampler``.
"""

from __future__ import annotations

import random

import llama_cpp
import numpy as np

from models.engine.llama.grammar import ConstrainedSampler, GrammarStats


def sampler_chain(temperature: float, top_p: float, seed: int | None) -> llama_cpp.llama_sampler_p:
    """greedy at temperature 0; otherwise top-p, temperature, then a seeded random draw."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if temperature <= 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    draw_seed = seed if seed is not None else random.getrandbits(32)
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(top_p, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(temperature))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(draw_seed & 0xFFFFFFFF))
    return chain


class TokenSampler:
    """Samples one request's tokens; owns its llama.cpp sampler objects until ``close``."""

    def __init__(
        self,
        ctx: llama_cpp.llama_context_p,
        n_vocab: int,
        *,
        temperature: float,
        top_p: float,
        seed: int | None,
        grammar: llama_cpp.llama_sampler_p | None = None,
        logprobs: int | None = None,
    ) -> None:
        self._ctx = ctx
        self._n_vocab = n_vocab
        self._logprobs = logprobs
        self.last_logprobs: tuple[float, list[tuple[int, float]]] | None = None
        self._chain = sampler_chain(temperature, top_p, seed)
        self._grammar = grammar
        self._constrained = ConstrainedSampler(ctx, self._chain, grammar, n_vocab) if grammar is not None else None
        self._closed = False

    @property
    def grammar_stats(self) -> GrammarStats | None:
        """How often the grammar's one-token check held (None without a grammar)."""
        return self._constrained.stats if self._constrained is not None else None

    def sample(self, row: int) -> int:
        """The next token from output ``row`` of the last decode, accepted into the state.

        With ``logprobs`` asked for, also sets ``last_logprobs`` (that token's log-probability
        and the top alternatives'); otherwise that costs nothing.
        """
        if self._constrained is not None:
            token = self._constrained.sample(row)
        else:
            token = llama_cpp.llama_sampler_sample(self._chain, self._ctx, row)
        if self._logprobs is not None:
            self.last_logprobs = self._log_softmax_at(row, token, self._logprobs)
        return token

    def _log_softmax_at(self, row: int, token: int, top: int) -> tuple[float, list[tuple[int, float]]]:
        """log p(token) and the ``top`` most likely tokens under the raw logits of ``row``."""
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx, row), shape=(self._n_vocab,))
        peak = float(logits.max())
        log_z = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))
        best: list[tuple[int, float]] = []
        if top > 0:
            ids = np.argpartition(logits, -top)[-top:]
            ids = ids[np.argsort(-logits[ids])]
            best = [(int(i), float(logits[i]) - log_z) for i in ids]
        return float(logits[token]) - log_z, best

    def close(self) -> None:
        """Free the chain and the grammar (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        llama_cpp.llama_sampler_free(self._chain)
        if self._grammar is not None:
            llama_cpp.llama_sampler_free(self._grammar)
