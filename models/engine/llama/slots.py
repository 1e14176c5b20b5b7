"""A batch slot (one KV sequence) and the request generating in it.

Each slot owns one llama.cpp sequence id. ``Slot.tokens`` mirrors exactly what that
sequence's KV cells hold (positions ``0..len-1``), so a new request re-uses the longest
common prefix of whichever idle slot matches it best, as llama-server's slots do.

``ActiveGeneration`` is the per-request half: what is still to be fed to the model, the
sampler, the UTF-8 decoder, counts, and the text with its stop strings and timings
(``models.engine.generated_text``, shared with every engine). It turns sampled tokens into
text deltas and decides when the request is finished; the scheduler in
``models.engine.llama.batch`` only moves tokens between it and ``llama_decode``.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass, field

from models.engine.api import FinishReason, GenerationResult, TokenLogprob
from models.engine.generated_text import GeneratedText
from models.engine.llama.lookup import PromptLookup
from models.engine.llama.sampler import TokenSampler
from models.engine.runner import QueuedGeneration


def reserved_cells(job: QueuedGeneration) -> int:
    """KV cells a request may need at most: its prompt plus its whole completion."""
    return len(job.prompt_tokens) + (job.request.max_tokens or 0)


@dataclass
class Slot:
    """One KV sequence; ``generation`` is None while it idles with its cached prefix."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    prompt_len: int = 0  # how many of ``tokens`` the last request's prompt gave (the rest: generated)
    generation: ActiveGeneration | None = None
    last_used: float = 0.0


class ActiveGeneration:
    """One request inside a slot, from its first prompt token to its result."""

    def __init__(
        self,
        job: QueuedGeneration,
        sampler: TokenSampler,
        *,
        cached_tokens: int,
        is_end_of_turn: Callable[[int], bool],
        piece: Callable[[int], bytes],
        lookup: PromptLookup | None,
    ) -> None:
        self.job = job
        self.sampler = sampler
        self.cached_tokens = cached_tokens
        self.pending: list[int] = list(job.prompt_tokens[cached_tokens:])
        self.prefilling = True
        self.lookup = lookup
        self.drafted = 0
        self.accepted = 0
        self._is_end_of_turn = is_end_of_turn
        self._piece = piece
        self.text = GeneratedText(job)
        self.started = self.text.started  # when it left the queue: prompt chunks go oldest first
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max_tokens = job.request.max_tokens or 0
        self.produced = 0
        self.finish_reason: FinishReason | None = None
        self._logprobs: list[TokenLogprob] | None = job.token_logprobs if job.request.logprobs is not None else None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def reserve(self) -> int:
        """KV cells this request may need at most (prompt plus its whole completion)."""
        return reserved_cells(self.job)

    def take(self, token: int) -> None:
        """Turn one sampled token into text; sets ``finish_reason`` when the request ends."""
        if self._is_end_of_turn(token):
            self.finish_reason = "stop"
            return
        self.produced += 1
        if self.lookup is not None:
            self.lookup.append(token)
        if self._logprobs is not None and self.sampler.last_logprobs is not None:
            logprob, top = self.sampler.last_logprobs
            alternatives = tuple((self._piece(t), lp) for t, lp in top)
            self._logprobs.append(TokenLogprob(self._piece(token), logprob, alternatives))
        if self.text.feed(self._decoder.decode(self._piece(token))):
            self.finish_reason = "stop"
        elif self.produced >= self._max_tokens:
            self.finish_reason = "length"

    def cancel(self) -> None:
        self.finish_reason = "cancelled"

    def result(self) -> GenerationResult:
        """Flush held text and build the result (call once, when ``done``)."""
        assert self.finish_reason is not None
        text = self.text.close(self._decoder.decode(b"", final=True))
        return self.text.result(
            self.finish_reason,
            prompt_tokens=len(self.job.prompt_tokens),
            completion_tokens=self.produced,
            cached_prompt_tokens=self.cached_tokens,
            draft_tokens=self.drafted,
            accepted_draft_tokens=self.accepted,
            logprobs=self._text_logprobs(text),
        )

    def _text_logprobs(self, text: str) -> list[TokenLogprob] | None:
        """The recorded tokens that make up the returned ``text`` (a stop string's are dropped)."""
        if self._logprobs is None:
            return None
        room, kept = len(text.encode()), []
        for entry in self._logprobs:
            room -= len(entry.piece)
            if room < 0:
                break
            kept.append(entry)
        return kept
