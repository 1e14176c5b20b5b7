"""The narrow seam between the server and whatever generates tokens.

The server, the agent loop and the benchmarks only ever see this module. The real
implementation (``models.engine.llama.engine``) runs llama.cpp on one owner thread; the scripted
fake (``models.engine.scripted``) replays canned turns for deterministic tests.

Error tree::

    EngineError                 our own failure while generating (a bug or a llama.cpp error)
    ├── QueueFullError          the bounded queue in front of the owner thread is full (-> 503)
    ├── ContextOverflowError    prompt + max_tokens does not fit the context window (-> 400)
    ├── EngineClosedError       the engine was shut down while the request waited
    └── TokenizerUnavailableError  this engine cannot tokenize or detokenize (-> 501)

    InvalidTokenError (ValueError)  a token id outside the vocabulary (the caller's error, -> 400)

Usage::

    handle = engine.submit(GenerationRequest(prompt=..., max_tokens=64))  # raises at once
    async for delta in handle.stream():                                   # text deltas
        ...
    result = handle.result                                                # after the stream
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from models.engine.usage import Usage

FinishReason = Literal["stop", "length", "cancelled"]


class EngineError(RuntimeError):
    """Generation failed for a reason that is ours, not the caller's."""


class QueueFullError(EngineError):
    """Every slot of the bounded request queue is taken; the caller should retry later."""

    def __init__(self, depth: int, retry_after_s: int = 1) -> None:
        super().__init__(f"the generation queue is full ({depth} requests waiting); retry shortly")
        self.depth = depth
        self.retry_after_s = retry_after_s


class ContextOverflowError(EngineError):
    """The prompt plus the requested completion does not fit the context window."""

    def __init__(self, prompt_tokens: int, max_tokens: int, context_length: int) -> None:
        super().__init__(
            f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) = "
            f"{prompt_tokens + max_tokens} tokens exceeds the context window of "
            f"{context_length} tokens; shorten the conversation or lower max_tokens"
        )
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_length = context_length


class EngineClosedError(EngineError):
    """The engine shut down before this request could run."""


class TokenizerUnavailableError(EngineError):
    """The engine has no tokenizer to expose (a scripted fake, a remote backend)."""


class InvalidTokenError(ValueError):
    """A token id the model's vocabulary does not have; the caller's mistake, not ours.

    Only a message: a remote backend refuses the ids without saying which one."""

    @classmethod
    def outside(cls, token: int, n_vocab: int) -> InvalidTokenError:
        return cls(f"token {token} is not in the vocabulary (ids 0..{n_vocab - 1})")


@dataclass(frozen=True)
class GenerationRequest:
    """One completion of a rendered prompt.

    ``max_tokens=None`` means "as much as the context window leaves". ``grammar`` is GBNF
    text; engines cache the compiled grammar by its text. ``logprobs``: None (off, no cost)
    or how many most likely alternatives to report beside each generated token's own
    log-probability (0..20); honoured where ``EngineInfo.logprobs``.
    """

    prompt: str
    max_tokens: int | None = None
    temperature: float = 0.7
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    grammar: str | None = None
    logprobs: int | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token (its bytes) and its log-probability under the model's own
    distribution (before temperature, top-p and grammar), with the ``top`` alternatives."""

    piece: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()


@dataclass
class GenerationResult:
    """What a finished generation produced, with real token counts and timings."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    stop_string: str | None = None
    cached_prompt_tokens: int = 0
    queued_s: float = 0.0
    time_to_first_token_s: float = 0.0
    total_s: float = 0.0
    draft_tokens: int = 0  # prompt-lookup guesses decoded alongside the real next token
    accepted_draft_tokens: int = 0  # guesses the model confirmed (each one saved a decode step)
    logprobs: list[TokenLogprob] | None = None  # one per token of ``text``, when requested

    @property
    def usage(self) -> Usage:
        """This generation's cost as the one usage record (``models.engine.usage``)."""
        return Usage(self.prompt_tokens, self.completion_tokens, self.cached_prompt_tokens, self.total_s)

    @property
    def decode_tokens_per_s(self) -> float:
        decode_s = self.total_s - self.time_to_first_token_s
        if self.completion_tokens <= 1 or decode_s <= 0:
            return 0.0
        return (self.completion_tokens - 1) / decode_s


@dataclass(frozen=True)
class EngineInfo:
    """What the loaded model is and where it runs; shown by /health and start-up logs."""

    model_id: str
    model_path: str
    backend: str  # "cpu" | "cuda" | "metal" | "vulkan" | "scripted" | ...
    offloaded_layers: int
    total_layers: int
    context_length: int
    chat_format: str = "chatml"
    stop: tuple[str, ...] = ("<|im_end|>",)
    aliases: tuple[str, ...] = field(default_factory=tuple)
    grammar_support: str = "gbnf"  # how GenerationRequest.grammar is honoured; "none": ignored
    token_counts: str = "exact"  # "estimate" when the engine cannot tokenize (count_tokens)
    parallel_sequences: int = 1  # requests decoded together in one batch
    lookup_draft_tokens: int = 0  # prompt-lookup speculative decoding: max guesses per step (0: off)
    logprobs: bool = False  # whether GenerationRequest.logprobs is honoured
    vocab_size: int | None = None  # token ids run from 0 to vocab_size - 1; None: not known here


class GenerationHandle(Protocol):
    """A submitted request: stream its text, cancel it, read its result."""

    def stream(self) -> AsyncIterator[str]:
        """Yield text deltas as the model produces them; ends when generation ends."""
        ...

    def cancel(self) -> None:
        """Stop at the next token (or drop from the queue); safe to call any time, twice."""
        ...

    @property
    def result(self) -> GenerationResult:
        """The final result; only valid once ``stream()`` is exhausted."""
        ...

    @property
    def token_logprobs(self) -> list[TokenLogprob]:
        """The logprobs of the tokens sampled so far (empty unless asked for and honoured),
        each recorded before its text is streamed: a streaming caller hands every delta
        the tokens it completes. May run past the text (held stop-string prefixes);
        ``result.logprobs`` is the final, exact list."""
        ...


class Engine(Protocol):
    """A loaded model behind a bounded FIFO queue."""

    @property
    def info(self) -> EngineInfo:
        """What the model is and where it runs (read-only: a wrapper may forward its inner one)."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes as a prompt (special tokens parsed)."""
        ...

    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        """``text``'s token ids, special tokens parsed; ``add_special`` adds BOS (and EOS)
        where the model wants them. Raises TokenizerUnavailableError where there is no tokenizer."""
        ...

    def token_pieces(self, tokens: list[int]) -> list[bytes]:
        """Each token's bytes (special tokens rendered); a piece may be part of a UTF-8
        character. Raises InvalidTokenError for an id outside the vocabulary."""
        ...

    def detokenize(self, tokens: list[int]) -> str:
        """The text of ``tokens`` (special tokens rendered; broken UTF-8 replaced)."""
        ...

    def queue_depth(self) -> int:
        """Requests waiting plus the one running."""
        ...

    def submit(self, request: GenerationRequest) -> GenerationHandle:
        """Enqueue or raise QueueFullError / ContextOverflowError at once (never later)."""
        ...

    def close(self) -> None:
        """Cancel everything and free the model."""
        ...


async def generate_text(engine: Engine, request: GenerationRequest) -> GenerationResult:
    """Run one request to the end and return its result (for callers that do not stream)."""
    handle = engine.submit(request)
    try:
        async for _ in handle.stream():
            pass
    except asyncio.CancelledError:
        handle.cancel()
        raise
    return handle.result
