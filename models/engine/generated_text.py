"""One generation's text on its way out: streamed with stop strings cut, then its result.

Every engine produces text differently (llama.cpp tokens, the scripted fake's words, a remote
backend's SSE chunks) but must end it the same way, so that the turn generator above sees one
behaviour:

- a stop string can arrive split across pieces, so text that might begin one is held back
  until it is either completed (generation stops; the stop string is not part of the
  output, as OpenAI does) or ruled out (the held text is released);
- text that is safe goes to the job (``QueuedGeneration.emit``) as soon as it is known;
- at the end, held text is released unless a stop string matched, and the
  ``GenerationResult`` carries the text, the stop string and the timings measured from the
  moment the generation started.

``feed`` runs once per token on the owner thread: it matches inline rather than returning a
scan object, so the per-token path allocates nothing beyond the strings themselves.
"""

from __future__ import annotations

import time

from models.engine.api import FinishReason, GenerationResult, TokenLogprob
from models.engine.runner import QueuedGeneration


class GeneratedText:
    """Feed text pieces; what is safe is emitted to ``job``; ``result`` ends the generation."""

    def __init__(self, job: QueuedGeneration) -> None:
        self._job = job
        self._emit = job.emit
        self._stops = tuple(s for s in job.request.stop if s)
        self._held = ""
        self._closed = False
        self.text = ""  # everything emitted so far
        self.stop_string: str | None = None  # the stop string that ended the text, if one did
        self.started = time.perf_counter()
        self.first_token_at = 0.0

    def feed(self, piece: str) -> bool:
        """Emit what of ``piece`` is safe; True when a stop string ended the text.

        After True the caller stops generating: the stop string and anything after it are
        dropped, and later pieces must not be fed.
        """
        if not self.first_token_at:
            self.first_token_at = time.perf_counter()
        buffer = self._held + piece
        first_hit = -1
        for stop in self._stops:
            index = buffer.find(stop)
            if index != -1 and (first_hit == -1 or index < first_hit):
                first_hit, self.stop_string = index, stop
        if first_hit != -1:
            emit, self._held = buffer[:first_hit], ""
        else:
            keep = self._longest_partial_stop(buffer)
            emit, self._held = buffer[: len(buffer) - keep], buffer[len(buffer) - keep :]
        if emit:
            self.text += emit
            self._emit(emit)
        return first_hit != -1

    def close(self, tail: str = "") -> str:
        """Feed the last piece (``tail``: e.g. a decoder's flushed bytes) and release held text,
        unless a stop string already ended it; return the final text. Safe to call twice."""
        if not self._closed:
            self._closed = True
            if self.stop_string is None and not (tail and self.feed(tail)):
                rest, self._held = self._held, ""
                if rest:
                    self.text += rest
                    self._emit(rest)
        return self.text

    def result(
        self,
        finish_reason: FinishReason,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        reported_stop: str | None = None,
        cached_prompt_tokens: int = 0,
        draft_tokens: int = 0,
        accepted_draft_tokens: int = 0,
        logprobs: list[TokenLogprob] | None = None,
    ) -> GenerationResult:
        """The finished generation (closes the text first). ``reported_stop``: a stop string
        the backend says it cut itself (the remote engine), used when none matched here."""
        self.close()
        now = time.perf_counter()
        return GenerationResult(
            text=self.text,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            stop_string=self.stop_string or reported_stop,
            cached_prompt_tokens=cached_prompt_tokens,
            queued_s=self.started - self._job.submitted_at,
            time_to_first_token_s=(self.first_token_at or now) - self.started,
            total_s=now - self.started,
            draft_tokens=draft_tokens,
            accepted_draft_tokens=accepted_draft_tokens,
            logprobs=logprobs,
        )

    def _longest_partial_stop(self, buffer: str) -> int:
        """How many trailing characters of ``buffer`` could begin a stop string."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest
