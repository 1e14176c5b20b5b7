"""Saved KV states per conversation, so interleaved agent sessions do not evict each other.

One llama.cpp context holds one KV cache. An agent turn re-uses everything its previous
turn left in it — until another session's turn runs in between and replaces it, after
which the first session pays a full prefill again. This cache snapshots the context's
sequence at the moment it is about to be replaced by a *different* conversation (never on
the hot path of a single conversation, which only appends), and restores the snapshot
with the longest common prefix when that conversation comes back.

Only the KV cells of sequence 0 are copied (``llama_state_seq_get_data``): one memcpy of
the used cells, no logits (llama-cpp-python's ``save_state`` also copies the logits
buffer and the score matrix, several times over, which cost seconds per switch). After a
restore, ``Llama.generate`` re-evaluates the last prompt token, so the logits are fresh.
Bounded in bytes, least recently used first out.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp
import numpy as np

log = logging.getLogger(__name__)

# Switching conversations means keeping less than this share of the current context.
SWITCH_SHARE = 0.5
MIN_SAVED_TOKENS = 32
SEQ = 0


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


@dataclass(frozen=True)
class Snapshot:
    tokens: tuple[int, ...]
    kv: bytes


class ConversationStateCache:
    """Save-on-switch, restore-on-return KV snapshots, bounded by ``capacity_bytes``."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._snapshots: OrderedDict[tuple[int, ...], Snapshot] = OrderedDict()
        self.size_bytes = 0
        self.saves = 0
        self.restores = 0

    def prepare(self, llama: llama_cpp.Llama, prompt: Sequence[int]) -> int:
        """Before evaluating ``prompt``: save a state it would discard, restore a better one.

        Returns how many prompt tokens the context holds already after this call.
        """
        current = llama._input_ids.tolist()  # noqa: SLF001 - the tokens the KV cache holds
        reused = common_prefix(current, prompt)
        if len(current) >= MIN_SAVED_TOKENS and reused < SWITCH_SHARE * len(current):
            self._save(llama, current)
        if reused >= len(prompt) - 1:
            return reused
        best, best_len = None, reused
        for snapshot in self._snapshots.values():
            length = common_prefix(snapshot.tokens, prompt)
            if length > best_len:
                best, best_len = snapshot, length
        if best is None or not self._restore(llama, best):
            return reused
        self._snapshots.move_to_end(best.tokens)
        return best_len

    def _save(self, llama: llama_cpp.Llama, tokens: list[int]) -> None:
        ctx = llama._ctx.ctx  # noqa: SLF001
        size = llama_cpp.llama_state_seq_get_size(ctx, SEQ)
        if size <= 0 or size > self.capacity_bytes:
            return
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, SEQ)
        if written <= 0:
            return
        key = tuple(tokens)
        self._drop(key)
        self._snapshots[key] = Snapshot(key, bytes(buffer)[:written])
        self.size_bytes += written
        self.saves += 1
        while self.size_bytes > self.capacity_bytes and self._snapshots:
            self._drop(next(iter(self._snapshots)))

    def _drop(self, key: tuple[int, ...]) -> None:
        old = self._snapshots.pop(key, None)
        if old is not None:
            self.size_bytes -= len(old.kv)

    def _restore(self, llama: llama_cpp.Llama, snapshot: Snapshot) -> bool:
        ctx = llama._ctx.ctx  # noqa: SLF001
        llama._ctx.kv_cache_seq_rm(SEQ, -1, -1)  # noqa: SLF001
        data = (ctypes.c_uint8 * len(snapshot.kv)).from_buffer_copy(snapshot.kv)
        if llama_cpp.llama_state_seq_set_data(ctx, data, len(snapshot.kv), SEQ) == 0:
            log.warning("restoring a saved conversation state failed; re-evaluating the prompt")
            llama.n_tokens = 0
            return False
        n = len(snapshot.tokens)
        llama.input_ids[:n] = np.asarray(snapshot.tokens, dtype=np.intc)
        llama.n_tokens = n
        llama._requires_eval = True  # noqa: SLF001 - logits must come from a live decode
        self.restores += 1
        return True
