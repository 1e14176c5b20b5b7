"""Grammar-constrained sampling that costs (almost) nothing when the model already complies.

llama-cpp-python puts the GBNF grammar sampler inside the sampler chain, so *every* token
runs the grammar over the whole vocabulary (49k pieces for SmolLM2, 32k for Mistral) before
the chain picks one. On a small model that is as slow as the forward pass itself: the
action grammar halved decode speed. llama.cpp's own ``common_sampler_sample`` avoids this
with a fast path, reproduced here:

1. sample from the *unconstrained* chain (top-p/temperature/dist, or greedy);
2. ask the grammar about that one token only (``llama_sampler_apply`` on a 1-entry array);
3. accepted (the usual case): feed it to the grammar state and return it;
4. rejected: mask the full vocabulary with the grammar, run the chain again, return that.

With greedy sampling the result is exactly the naive path's: if the unconstrained argmax is
allowed it is also the argmax of the allowed tokens. With temperature > 0 an accepted first
draw comes from the unconstrained chain; on a rejection we resample from the masked
distribution, as llama.cpp does.

``GrammarCache`` parses each GBNF text once and hands every request a clone;
``ConstrainedSampler`` is the fast path, used by each request's
``models.engine.llama.sampler.TokenSampler``.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

import llama_cpp
import numpy as np

from models.engine.api import EngineError

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)
assert _TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)


@dataclass
class GrammarStats:
    """How often the fast path held; ``slow`` tokens paid the full-vocabulary mask."""

    fast: int = 0
    slow: int = 0

    @property
    def slow_share(self) -> float:
        total = self.fast + self.slow
        return self.slow / total if total else 0.0


class GrammarCache:
    """Parsed grammars per GBNF text, cloned per request (parsing is not free; cloning is)."""

    def __init__(self, vocab: llama_cpp.llama_vocab_p, max_entries: int = 16) -> None:
        self._vocab = vocab
        self._max = max_entries
        self._prototypes: dict[str, llama_cpp.llama_sampler_p] = {}

    def fresh(self, gbnf: str) -> llama_cpp.llama_sampler_p:
        """A grammar sampler in its start state; the caller frees it."""
        prototype = self._prototypes.get(gbnf)
        if prototype is None:
            prototype = llama_cpp.llama_sampler_init_grammar(self._vocab, gbnf.encode(), b"root")
            if not prototype:
                raise EngineError("the grammar does not compile (llama.cpp rejected the GBNF text)")
            if len(self._prototypes) >= self._max:
                oldest = next(iter(self._prototypes))
                llama_cpp.llama_sampler_free(self._prototypes.pop(oldest))
            self._prototypes[gbnf] = prototype
        return llama_cpp.llama_sampler_clone(prototype)

    def close(self) -> None:
        for prototype in self._prototypes.values():
            llama_cpp.llama_sampler_free(prototype)
        self._prototypes.clear()


class ConstrainedSampler:
    """An unconstrained llama.cpp sampler chain plus a grammar checked lazily (see module doc).

    ``chain`` must not carry the grammar itself and must be stateless apart from the RNG of
    ``dist`` (``models.engine.llama.sampler.sampler_chain``: greedy, or top-p/temperature/dist),
    because on a rejection the chain has already seen the rejected draw.
    """

    def __init__(
        self,
        ctx: llama_cpp.llama_context_p,
        chain: llama_cpp.llama_sampler_p,
        grammar: llama_cpp.llama_sampler_p,
        n_vocab: int,
    ) -> None:
        self._ctx = ctx
        self._chain = chain
        self._grammar = grammar
        self._n_vocab = n_vocab
        self.stats = GrammarStats()
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._one, llama_cpp.llama_token_data_p), size=1, selected=-1, sorted=False
        )
        self._one_ref = ctypes.byref(self._one_array)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._full: np.ndarray | None = None  # allocated on the first rejection only

    def sample(self, row: int = -1) -> int:
        """Pick the next token from the logits of output ``row`` (-1: the last) and accept it."""
        token = llama_cpp.llama_sampler_sample(self._chain, self._ctx, row)
        if self._allowed(token):
            llama_cpp.llama_sampler_accept(self._grammar, token)
            self.stats.fast += 1
            return token
        token = self._sample_masked(row)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        self.stats.slow += 1
        return token

    def _allowed(self, token: int) -> bool:
        one = self._one[0]
        # ctypes converts a Python int on assignment; llama_cpp annotates the field as c_int32.
        one.id, one.logit, one.p = token, 0.0, 0.0  # type: ignore[assignment]
        self._one_array.size, self._one_array.selected, self._one_array.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(self._grammar, self._one_ref)
        return not math.isinf(self._one[0].logit)

    def _sample_masked(self, row: int) -> int:
        if self._full is None:
            self._full = np.zeros(self._n_vocab, dtype=_TOKEN_DATA)
        full = self._full
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx, row), shape=(self._n_vocab,))
        full["id"] = self._ids  # samplers sort in place: restore the identity order
        full["logit"] = logits
        full["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=full.ctypes.data_as(llama_cpp.llama_token_data_p), size=self._n_vocab, selected=-1, sorted=False
        )
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise EngineError("the grammar allows no token here (every candidate was masked)")
        return int(array.data[array.selected].id)
