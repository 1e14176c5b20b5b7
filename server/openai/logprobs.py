"""``logprobs`` / ``top_logprobs`` in OpenAI's two shapes (chat and legacy completions).

The engine reports each generated token's bytes and log-probability under the model's
own distribution (``models.engine.api.TokenLogprob``); this module only shapes them. It
costs nothing unless asked: the engine computes a log-softmax per token only for requests
that set ``GenerationRequest.logprobs``.

Streams hand each text delta the tokens it completes, as OpenAI's do (``StreamedLogprobs``);
the chunk that ends the choice carries the tokens no delta showed (those of tool calls,
held text): a client that concatenates ``choices[0].logprobs.content`` over the chunks (as
the openai SDK's stream helpers do) gets the same list as without streaming.
"""

from __future__ import annotations

from typing import Any

from models.engine.api import Engine, GenerationHandle, TokenLogprob
from server.openai.errors import RequestRefused
from server.openai.unsupported import refuse

MAX_TOP_CHAT = 20
MAX_TOP_COMPLETIONS = 5


def chat_logprobs_request(engine: Engine, logprobs: bool | None, top_logprobs: int | None) -> int | None:
    """What to ask the engine for: None (off) or how many alternatives per token."""
    if top_logprobs and not logprobs:
        raise RequestRefused("'top_logprobs' needs 'logprobs' set to true", param="top_logprobs")
    if not logprobs:
        return None
    if not engine.info.logprobs:
        raise refuse("logprobs", "is not supported by this engine")
    return top_logprobs or 0


def completions_logprobs_request(engine: Engine, logprobs: int | None) -> int | None:
    if logprobs is None:
        return None
    if not engine.info.logprobs:
        raise refuse("logprobs", "is not supported by this engine")
    return logprobs


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


def chat_logprobs(entries: list[TokenLogprob] | None) -> dict[str, Any] | None:
    """``choices[i].logprobs`` of a chat completion (or its final stream chunk)."""
    if entries is None:
        return None
    return {
        "content": [
            {
                "token": _text(e.piece),
                "logprob": e.logprob,
                "bytes": list(e.piece),
                "top_logprobs": [{"token": _text(p), "logprob": lp, "bytes": list(p)} for p, lp in e.top],
            }
            for e in entries
        ],
        "refusal": None,
    }


def completion_logprobs(entries: list[TokenLogprob] | None, offset: int = 0) -> dict[str, Any] | None:
    """``choices[i].logprobs`` of a legacy text completion (``text_offset`` from ``offset``)."""
    if entries is None:
        return None
    offsets, at = [], offset
    for e in entries:
        offsets.append(at)
        at += len(_text(e.piece))
    return {
        "tokens": [_text(e.piece) for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{_text(p): lp for p, lp in e.top} for e in entries],
        "text_offset": offsets,
    }


class StreamedLogprobs:
    """Which tokens' logprobs go with each streamed text delta.

    The engine records each token's logprob before it streams the token's text
    (``GenerationHandle.token_logprobs``), but text can lag its tokens: a stop string's
    prefix is held until it is decided, a UTF-8 character waits for its last byte, a
    possible tool call is held by the route. So a delta gets the recorded tokens whose bytes
    the text shown so far covers, never more; ``rest`` gives the final chunk the others,
    from the exact final list (a stop string's tokens are not in it).
    """

    def __init__(self, handle: GenerationHandle) -> None:
        self._live = handle.token_logprobs
        self._sent = 0
        self._covered = 0  # bytes of the tokens handed out
        self._shown = 0  # bytes of the text shown
        self.chars = 0  # characters of the tokens handed out (the next one's text_offset)

    def take(self, text: str) -> list[TokenLogprob]:
        """The tokens that ``text``, shown now after everything before it, completes."""
        self._shown += len(text.encode())
        start = self._sent
        while self._sent < len(self._live) and self._covered + len(self._live[self._sent].piece) <= self._shown:
            self._covered += len(self._live[self._sent].piece)
            self.chars += len(_text(self._live[self._sent].piece))
            self._sent += 1
        return self._live[start : self._sent]

    def rest(self, final: list[TokenLogprob] | None) -> list[TokenLogprob] | None:
        """The final list's tokens not handed out yet (None when logprobs were not asked)."""
        return None if final is None else final[self._sent :]
