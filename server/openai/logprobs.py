"""``logprobs`` / ``top_logprobs`` in OpenAI's two shapes (chat and legacy completions).

The engine reports each generated token's bytes and log-probability under the model's
own distribution (``models.engine.api.TokenLogprob``); this module only shapes them. It
costs nothing unless asked: the engine computes a log-softmax per token only for requests
that set ``GenerationRequest.logprobs``.

Streams carry the whole list once, on the chunk that ends the choice: a client that
concatenates ``choices[0].logprobs.content`` over the chunks (as the openai SDK's stream
helpers do) gets the same list as without streaming.
"""

from __future__ import annotations

from typing import Any

from models.engine.api import Engine, TokenLogprob
from server.api.errors import InvalidRequest
from server.openai.unsupported import refuse

MAX_TOP_CHAT = 20
MAX_TOP_COMPLETIONS = 5


def chat_logprobs_request(engine: Engine, logprobs: bool | None, top_logprobs: int | None) -> int | None:
    """What to ask the engine for: None (off) or how many alternatives per token."""
    if top_logprobs and not logprobs:
        raise InvalidRequest("'top_logprobs' needs 'logprobs' set to true", param="top_logprobs")
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
