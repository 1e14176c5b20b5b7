"""Continuous batching: the turns of several conversations decoded in one ``llama_decode``.

One decode step costs nearly the same for one sequence as for four: the weights are read
once either way (measured here: 4 sequences gave 2.8x the tokens per second of one). So the
owner thread keeps up to ``n_slots`` requests running at once, each in its own KV sequence
(``models.engine.llama.slots.Slot``), and every step feeds all of them together:

- decoding requests contribute their next token (plus prompt-lookup draft tokens when it is
  the only one decoding, see ``models.engine.llama.lookup``), with logits for each;
- requests still reading their prompt fill the rest of the batch with a prompt chunk, so a
  long new prompt delays the others' next token by one chunk at most, never by a whole
  prefill.

The KV cache is unified: all sequences share the context's cells, and one request may still
use the whole context window. A request is admitted only when the cells reserved by the
running ones (prompt plus ``max_tokens`` each) leave room for it; idle slots keep their
conversation's cells until those are needed, then are saved to the state cache
(``models.engine.llama.state_cache``) and cleared. Requests wait in the bounded FIFO every
engine shares (``models.engine.runner.OwnerThread``, whose ``Worker`` this scheduler is): a
full queue is refused at submit time.

Draft verification keeps greedy and sampled output exact: row ``j`` of a request's rows is
sampled exactly as one-at-a-time decoding would sample it, and is used only while every
earlier draft matched the token actually sampled; the first mismatch's sample is the next
token, and the KV cells of unmatched drafts are removed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import llama_cpp

from models.engine.api import EngineError
from models.engine.llama.slots import ActiveGeneration, Slot, reserved_cells
from models.engine.llama.state_cache import MIN_SAVED_TOKENS, ConversationStateCache, common_prefix, worth_saving
from models.engine.runner import QueuedGeneration

log = logging.getLogger(__name__)

OpenGeneration = Callable[[QueuedGeneration, int], ActiveGeneration]


@dataclass
class _Feed:
    """What one slot put into this step's batch."""

    slot: Slot
    tokens: list[int]
    first_row: int
    drafts: list[int]
    samples: bool  # logits requested: the prompt is complete, or this is a decode step


class BatchScheduler:
    """The ``Worker`` of one llama.cpp context's owner thread: up to ``n_slots`` requests at once.

    The queue in front of it, the thread and the refusals are ``models.engine.runner.OwnerThread``'s,
    shared with every engine; this class decides when a waiting request may start (a free slot
    and enough unreserved KV cells) and runs the decode steps.
    """

    def __init__(
        self,
        ctx: llama_cpp.llama_context_p,
        *,
        n_ctx: int,
        n_batch: int,
        n_slots: int,
        open_generation: OpenGeneration,
        states: ConversationStateCache | None = None,
        max_draft: int = 0,
    ) -> None:
        if n_slots < 1:
            raise ValueError("n_slots must be at least 1")
        self._ctx = ctx
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._n_ctx = n_ctx
        self._n_batch = n_batch
        self._open = open_generation
        self._states = states
        self._max_draft = max_draft
        self._slots = [Slot(seq_id) for seq_id in range(n_slots)]
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._running = 0
        self.steps = 0

    def free(self) -> None:
        """Free the batch buffer (once the owner thread has ended)."""
        llama_cpp.llama_batch_free(self._batch)

    # -- Worker: what the queue asks --------------------------------------------------------
    def running(self) -> int:
        return self._running

    def can_start(self, job: QueuedGeneration) -> bool:
        """A slot is idle and the running requests' reserved cells leave room for this one."""
        reserved = sum(s.generation.reserve() for s in self._slots if s.generation is not None)
        if reserved + reserved_cells(job) > self._n_ctx:
            return False  # wait until running requests give their cells back
        return any(s.generation is None for s in self._slots)

    def cancel_running(self) -> None:
        for slot in self._slots:
            generation = slot.generation
            if generation is not None:
                generation.job.cancel()

    def fail_running(self, error: EngineError) -> None:
        for slot in self._slots:
            self._fail(slot, error)

    # -- Worker: starting and stepping (owner thread) ----------------------------------------
    def _pick_slot(self, prompt: list[int]) -> Slot | None:
        """The idle slot this prompt continues or repeats (longest prefix); else an empty one; else the oldest.

        A slot whose conversation would mostly be thrown away is only taken when no slot is
        continued or empty: a shared system prompt must not pull two conversations into one
        slot while another stands empty.
        """
        idle = [s for s in self._slots if s.generation is None]
        if not idle:
            return None

        def preference(slot: Slot) -> tuple[bool, int, float]:
            reused = common_prefix(slot.tokens, prompt)
            continues = reused >= len(prompt) - 1 or not worth_saving(slot.tokens, reused)
            return (continues, reused if continues else 0, -slot.last_used)

        return max(idle, key=preference)

    def start(self, job: QueuedGeneration) -> None:
        """Put ``job`` in the idle slot that serves it best, restoring a saved state when that
        reuses more of its prompt than the slot holds."""
        prompt = job.prompt_tokens
        slot = self._pick_slot(prompt)
        if slot is None:  # cannot happen: the owner thread asked can_start, or nothing runs
            raise EngineError("no idle batch slot for an admitted request")
        reused = common_prefix(slot.tokens, prompt)
        if self._states is not None:
            if worth_saving(slot.tokens, reused):
                self._states.save(self._ctx, slot.seq_id, slot.tokens, slot.prompt_len)
            hit = self._states.best(prompt, reused)
            if hit is not None:
                snapshot, length = hit
                self._clear(slot)
                self._make_room(len(snapshot.tokens), keep=slot)
                if self._states.restore(self._ctx, slot.seq_id, snapshot):
                    slot.tokens, slot.prompt_len, reused = list(snapshot.tokens), snapshot.prompt_len, length
                else:
                    self._clear(slot)
                    reused = 0
        self._truncate(slot, min(reused, len(prompt) - 1))  # at least one token makes logits
        slot.prompt_len = len(prompt)
        try:
            slot.generation = self._open(job, len(slot.tokens))
        except EngineError as exc:
            job.fail(exc)
            return
        self._running += 1

    def step(self) -> None:
        """One ``llama_decode`` for every running request: drop the cancelled, feed, sample."""
        for slot in self._slots:
            generation = slot.generation
            if generation is not None and generation.job.cancelled:
                generation.cancel()
                self._finish(slot)
        feeds = self._fill_batch()
        if not feeds:
            return
        self._make_room(self._batch.n_tokens)
        if any(feed.slot.generation.prefilling for feed in feeds):  # type: ignore[union-attr]
            self._flush_text()  # a prompt chunk makes a long step: let no held text wait for it
        status = llama_cpp.llama_decode(self._ctx, self._batch)
        if status == 1:  # no KV cells free: give back every idle slot's cells and retry once
            self._make_room(self._n_ctx)
            status = llama_cpp.llama_decode(self._ctx, self._batch)
        self.steps += 1
        if status != 0:
            self._fail_all(feeds, EngineError(f"llama.cpp failed while decoding (llama_decode returned {status})"))
            return
        for feed in feeds:
            try:
                self._after_decode(feed)
            except Exception as exc:  # noqa: BLE001 - a bug of ours: report it to that caller only
                log.exception("generation failed")
                self._fail(feed.slot, EngineError(f"generation failed: {exc}"))

    def _flush_text(self) -> None:
        for slot in self._slots:
            if slot.generation is not None:
                slot.generation.job.flush()

    def _fill_batch(self) -> list[_Feed]:
        batch = self._batch
        feeds: list[_Feed] = []
        batch.n_tokens = 0
        busy = [s for s in self._slots if s.generation is not None]
        decoding = [s for s in busy if not s.generation.prefilling]  # type: ignore[union-attr]
        reading = sorted((s for s in busy if s.generation.prefilling), key=lambda s: s.generation.started)  # type: ignore[union-attr]
        for slot in decoding:
            generation = slot.generation
            assert generation is not None
            drafts = self._drafts(generation, len(decoding), len(decoding) - len(feeds))
            feed = _Feed(slot, [*generation.pending, *drafts], batch.n_tokens, drafts, samples=True)
            self._add(feed, logits_for_all=True)
            feeds.append(feed)
        for slot in reading:
            room = self._n_batch - batch.n_tokens
            if room <= 0:
                break
            generation = slot.generation
            assert generation is not None
            chunk = generation.pending[:room]
            feed = _Feed(slot, chunk, batch.n_tokens, [], samples=len(chunk) == len(generation.pending))
            self._add(feed, logits_for_all=False)
            feeds.append(feed)
        return feeds

    def _drafts(self, generation: ActiveGeneration, n_decoding: int, slots_left: int) -> list[int]:
        if not self._max_draft or generation.lookup is None or n_decoding > 1:
            return []
        remaining = (generation.job.request.max_tokens or 0) - generation.produced - 1
        room = self._n_batch - self._batch.n_tokens - slots_left
        return generation.lookup.propose(min(self._max_draft, remaining, room))

    def _add(self, feed: _Feed, *, logits_for_all: bool) -> None:
        batch = self._batch
        base = len(feed.slot.tokens)
        last = len(feed.tokens) - 1
        for offset, token in enumerate(feed.tokens):
            i = batch.n_tokens
            batch.token[i] = token
            batch.pos[i] = base + offset
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = feed.slot.seq_id
            batch.logits[i] = logits_for_all or (feed.samples and offset == last)
            batch.n_tokens = i + 1

    def _after_decode(self, feed: _Feed) -> None:
        slot, generation = feed.slot, feed.slot.generation
        assert generation is not None
        base = len(slot.tokens)
        slot.tokens.extend(feed.tokens)
        if generation.prefilling:
            del generation.pending[: len(feed.tokens)]
            if not feed.samples:
                return
            generation.prefilling = False
            rows = [feed.first_row + len(feed.tokens) - 1]
        else:
            rows = list(range(feed.first_row, feed.first_row + len(feed.tokens)))
        accepted, token = 0, -1
        for j, row in enumerate(rows):
            token = generation.sampler.sample(row)
            generation.take(token)
            if generation.done or j >= len(feed.drafts) or token != feed.drafts[j]:
                break
            accepted += 1
        generation.drafted += len(feed.drafts)
        generation.accepted += accepted
        self._truncate(slot, base + 1 + accepted if feed.drafts else len(slot.tokens))
        if generation.done:
            self._finish(slot)
        else:
            generation.pending = [token]

    # -- KV bookkeeping ----------------------------------------------------------------------
    def _truncate(self, slot: Slot, keep: int) -> None:
        if keep < len(slot.tokens):
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, keep, -1)
            del slot.tokens[keep:]

    def _clear(self, slot: Slot) -> None:
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
        slot.tokens = []

    def _make_room(self, cells: int, keep: Slot | None = None) -> None:
        """Free idle slots' cells, least recently used first, until ``cells`` are free."""
        used = sum(len(s.tokens) for s in self._slots)
        if self._n_ctx - used >= cells:  # the usual case, on every step
            return
        idle = sorted(
            (s for s in self._slots if s.generation is None and s.tokens and s is not keep),
            key=lambda s: s.last_used,
        )
        for slot in idle:
            if self._n_ctx - used >= cells:
                return
            if self._states is not None and len(slot.tokens) >= MIN_SAVED_TOKENS:
                self._states.save(self._ctx, slot.seq_id, slot.tokens, slot.prompt_len)
            used -= len(slot.tokens)
            self._clear(slot)

    # -- ending requests ---------------------------------------------------------------------
    def _finish(self, slot: Slot) -> None:
        generation = slot.generation
        assert generation is not None
        slot.generation = None
        slot.last_used = time.perf_counter()
        self._running -= 1
        generation.sampler.close()
        generation.job.finish(generation.result())

    def _fail(self, slot: Slot, error: EngineError) -> None:
        generation = slot.generation
        if generation is None:
            return
        slot.generation = None
        self._running -= 1
        self._clear(slot)  # its cells may hold a half-applied step
        generation.sampler.close()
        generation.job.fail(error)

    def _fail_all(self, feeds: list[_Feed], error: EngineError) -> None:
        for feed in feeds:
            self._fail(feed.slot, error)
