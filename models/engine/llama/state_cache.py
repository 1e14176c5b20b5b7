"""Saved KV states per conversation, so more conversations than batch slots do not evict
each other.

Each batch slot keeps its conversation's KV cells between turns (``models.engine.llama.slots``).
When a slot is handed to a *different* conversation, or its cells are reclaimed to make room,
everything it held would have to be prefilled again when that conversation comes back. This
cache snapshots the slot's sequence at that moment (never on the hot path of a conversation
that only appends) and restores the snapshot with the longest common prefix into whichever
slot the conversation lands in next.

Only the KV cells of one sequence are copied (``llama_state_seq_get_data``): one memcpy of
the used cells, no logits (llama-cpp-python's ``save_state`` also copies the logits buffer
and the score matrix, several times over, which cost seconds per switch). After a restore the
scheduler re-decodes at least the last prompt token, so the logits are fresh. Bounded in
bytes, least recently used first out.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp

log = logging.getLogger(__name__)

# Re-using less than this share of a slot's cells means it is switching conversations.
SWITCH_SHARE = 0.5
MIN_SAVED_TOKENS = 32


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def worth_saving(held: Sequence[int], reused: int) -> bool:
    """Whether replacing ``held`` while re-using only ``reused`` tokens loses a conversation."""
    return len(held) >= MIN_SAVED_TOKENS and reused < SWITCH_SHARE * len(held)


@dataclass(frozen=True)
class Snapshot:
    tokens: tuple[int, ...]
    kv: bytes
    prompt_len: int  # tokens[:prompt_len] came from a prompt, the rest were generated


class ConversationStateCache:
    """Snapshots of single KV sequences keyed by their tokens, bounded by ``capacity_bytes``."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._snapshots: OrderedDict[tuple[int, ...], Snapshot] = OrderedDict()
        self.size_bytes = 0
        self.saves = 0
        self.restores = 0

    def save(self, ctx: llama_cpp.llama_context_p, seq_id: int, tokens: Sequence[int], prompt_len: int) -> None:
        """Copy sequence ``seq_id`` (holding ``tokens``, the first ``prompt_len`` a prompt's) out."""
        size = llama_cpp.llama_state_seq_get_size(ctx, seq_id)
        if size <= 0 or size > self.capacity_bytes:
            return
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, seq_id)
        if written <= 0:
            return
        key = tuple(tokens)
        # An earlier turn of this conversation: this one holds its whole prompt. Superseded.
        for old in [snap for snap in self._snapshots.values() if common_prefix(snap.tokens, key) >= snap.prompt_len]:
            self._drop(old.tokens)
        self._snapshots[key] = Snapshot(key, ctypes.string_at(buffer, written), min(prompt_len, len(key)))
        self.size_bytes += written
        self.saves += 1
        while self.size_bytes > self.capacity_bytes and self._snapshots:
            self._drop(next(iter(self._snapshots)))

    def best(self, prompt: Sequence[int], better_than: int) -> tuple[Snapshot, int] | None:
        """The snapshot sharing the longest prefix with ``prompt``, if longer than ``better_than``."""
        best, best_len = None, better_than
        for snapshot in self._snapshots.values():
            length = common_prefix(snapshot.tokens, prompt)
            if length > best_len:
                best, best_len = snapshot, length
        return (best, best_len) if best is not None else None

    def restore(self, ctx: llama_cpp.llama_context_p, seq_id: int, snapshot: Snapshot) -> bool:
        """Load ``snapshot`` into the (emptied) sequence ``seq_id``; False if llama.cpp refused."""
        data = (ctypes.c_uint8 * len(snapshot.kv)).from_buffer_copy(snapshot.kv)
        if llama_cpp.llama_state_seq_set_data(ctx, data, len(snapshot.kv), seq_id) == 0:
            log.warning("restoring a saved conversation state failed; re-evaluating the prompt")
            return False
        self._snapshots.move_to_end(snapshot.tokens)
        self.restores += 1
        return True

    def _drop(self, key: tuple[int, ...]) -> None:
        old = self._snapshots.pop(key, None)
        if old is not None:
            self.size_bytes -= len(old.kv)
