"""Saved model states per conversation, so interleaved agent sessions do not evict each other.

One llama.cpp context holds one KV cache. An agent turn re-uses everything its previous
turn left in it — until another session's turn runs in between and replaces it, after
which the first session pays a full prefill again. This cache saves the context's state
at the moment it is about to be replaced by a *different* conversation (never on the hot
path of a single conversation, which only appends), and restores the saved state with the
longest common prefix when that conversation comes back. Bounded in bytes, least recently
used first out (llama-cpp-python's ``LlamaRAMCache``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import llama_cpp

log = logging.getLogger(__name__)

# Switching conversations means keeping less than this share of the current context.
SWITCH_SHARE = 0.5
MIN_SAVED_TOKENS = 32


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


class ConversationStateCache:
    """Save-on-switch, restore-on-return model states, bounded by ``capacity_bytes``."""

    def __init__(self, capacity_bytes: int) -> None:
        self._cache = llama_cpp.LlamaRAMCache(capacity_bytes=capacity_bytes)
        self.saves = 0
        self.restores = 0

    def prepare(self, llama: llama_cpp.Llama, prompt: Sequence[int]) -> int:
        """Before evaluating ``prompt``: save a state it would discard, restore a better one.

        Returns how many prompt tokens the context holds already after this call.
        """
        current = llama._input_ids.tolist()  # noqa: SLF001 - the tokens the KV cache holds
        reused = common_prefix(current, prompt)
        if len(current) >= MIN_SAVED_TOKENS and reused < SWITCH_SHARE * len(current):
            self._cache[current] = llama.save_state()
            self.saves += 1
        if reused >= len(prompt) - 1:
            return reused
        try:
            state = self._cache[prompt]
        except KeyError:
            return reused
        restored = common_prefix(state.input_ids[: state.n_tokens].tolist(), prompt)
        if restored > reused:
            llama.load_state(state)
            self.restores += 1
            return restored
        return reused

    @property
    def size_bytes(self) -> int:
        return self._cache.cache_size
