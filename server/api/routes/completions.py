"""``POST /v1/completions``: OpenAI's legacy text completions, plus a llama-server ``grammar``.

The prompt is used as given (no chat template), so this is what another codeact-server
talks to when it runs with ``--engine openai`` against this one (``models.engine.remote``).
Extensions beyond OpenAI's body and response:

- ``grammar`` (request): GBNF text constraining the completion, as llama-server takes it.
- ``stop_reason`` (response choice): the stop string that ended the completion, or null,
  as vLLM reports it; the stop string itself is not part of ``text``.

Non-stream answers one ``text_completion``; stream sends ``text_completion`` chunks (the
last one carries ``finish_reason``; with ``stream_options.include_usage`` a final chunk
with empty ``choices`` carries ``usage``), then ``data: [DONE]``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.engine.api import Engine, GenerationHandle, GenerationRequest
from server.api.deps import EngineDep
from server.api.openapi_errors import CHAT_RESPONSES, EVENT_STREAM
from server.api.routes.chat import check_model
from server.api.streams.disconnect import collect_unless_disconnected
from server.api.streams.sse import openai_stream, sse_event, sse_response
from server.openai.logprobs import (
    MAX_TOP_COMPLETIONS,
    StreamedLogprobs,
    completion_logprobs,
    completions_logprobs_request,
)
from server.openai.schemas import OPENAI_FINISH, StreamOptions, stop_list, usage_of, wants_usage
from server.openai.unsupported import COMPLETIONS, refuse_unsupported

router = APIRouter()


class CompletionRequest(BaseModel):
    """The legacy completions body.

    Unknown fields are kept (``extra="allow"``) so that those that would change the answer
    (``echo``, ``best_of``, ``suffix``, ``logit_bias``, penalties, ``n > 1``) are refused
    with a 400 naming them (``server.openai.unsupported``); the others are ignored.
    """

    model_config = ConfigDict(extra="allow")

    model: str
    prompt: str = Field(min_length=1)
    max_tokens: int | None = Field(16, ge=1, description="OpenAI's default is 16")
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    grammar: str | None = Field(None, description="GBNF text, as llama-server takes it")
    n: int = Field(1, ge=1, json_schema_extra={"maximum": 1}, description="one choice per request (n > 1: 400)")
    logprobs: int | None = Field(
        None, ge=0, le=MAX_TOP_COMPLETIONS, description="log-probabilities of the chosen and this many top tokens"
    )

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        return stop_list(value)

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> CompletionRequest:
        refuse_unsupported({**(self.model_extra or {}), "n": self.n}, COMPLETIONS)
        return self

    def generation_request(self, engine: Engine) -> GenerationRequest:
        return GenerationRequest(
            prompt=self.prompt,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=tuple(self.stop or ()),  # type: ignore[arg-type]
            seed=self.seed,
            grammar=self.grammar or None,
            logprobs=completions_logprobs_request(engine, self.logprobs),
        )


def _choice(
    text: str, finish_reason: str | None, stop_reason: str | None, logprobs: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "index": 0,
        "text": text,
        "logprobs": logprobs,
        "finish_reason": finish_reason,
        "stop_reason": stop_reason,
    }


def text_completion(
    completion_id: str,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return body


@router.post("/v1/completions", response_model=None, responses={**CHAT_RESPONSES, **EVENT_STREAM})
async def completions(body: CompletionRequest, engine: EngineDep, request: Request) -> Response | dict[str, Any]:
    check_model(engine, body.model)
    handle = engine.submit(body.generation_request(engine))  # 503/400 raised here, at once
    completion_id = f"cmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if body.stream:
        include_usage = wants_usage(body.stream_options)
        logprobs = body.logprobs is not None
        stream = _stream_chunks(handle, completion_id, body.model, created, include_usage, logprobs)
        return sse_response(openai_stream(stream))

    text = await collect_unless_disconnected(request, handle)
    if text is None:
        return Response(status_code=499)  # the client left; nobody reads this
    result = handle.result
    choice = _choice(
        text, OPENAI_FINISH[result.finish_reason], result.stop_string, completion_logprobs(result.logprobs)
    )
    return text_completion(completion_id, body.model, created, [choice], usage_of(result))


async def _stream_chunks(
    handle: GenerationHandle,
    completion_id: str,
    model: str,
    created: int,
    include_usage: bool,
    logprobs: bool = False,
) -> AsyncGenerator[bytes, None]:
    """Text deltas as they come, each with its tokens' logprobs when asked."""
    tokens = StreamedLogprobs(handle) if logprobs else None

    def piece_logprobs(piece: str) -> dict[str, Any] | None:
        if tokens is None:
            return None
        offset = tokens.chars  # text_offset of the first token this piece completes
        return completion_logprobs(tokens.take(piece), offset)

    try:
        async for piece in handle.stream():
            choice = _choice(piece, None, None, piece_logprobs(piece))
            yield sse_event(text_completion(completion_id, model, created, [choice]))
        result = handle.result
        rest = completion_logprobs(tokens.rest(result.logprobs), tokens.chars) if tokens else None
        last = _choice("", OPENAI_FINISH[result.finish_reason], result.stop_string, rest)
        yield sse_event(text_completion(completion_id, model, created, [last]))
        if include_usage:
            yield sse_event(text_completion(completion_id, model, created, [], usage_of(result)))
    finally:
        handle.cancel()  # no-op when finished; stops generation when the client went away
