"""OpenAI-compatible routes: health, model list, chat completions (stream and not)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response

from models.chat_format import render_chatml
from models.engine_api import Engine, EngineError, GenerationRequest
from server.deps import EngineDep
from server.disconnect import collect_unless_disconnected
from server.errors import ModelNotFound, engine_error_to_api
from server.schemas import (
    OPENAI_FINISH,
    ChatCompletionRequest,
    chat_chunk,
    chat_completion,
    new_completion_id,
    usage_of,
    wants_usage,
)
from server.sse import DONE, sse_event, sse_response

router = APIRouter()


def served_names(engine: Engine) -> list[str]:
    return [engine.info.model_id, *engine.info.aliases]


def check_model(engine: Engine, requested: str) -> None:
    """Refuse a model this server does not serve (404, as OpenAI does)."""
    if requested not in served_names(engine):
        raise ModelNotFound(requested, served_names(engine))


@router.get("/health")
async def health(engine: EngineDep, request: Request) -> dict[str, Any]:
    info = engine.info
    body: dict[str, Any] = {
        "status": "ok",
        "model": info.model_id,
        "model_path": info.model_path,
        "backend": info.backend,
        "offloaded_layers": info.offloaded_layers,
        "total_layers": info.total_layers,
        "context_length": info.context_length,
        "grammar": info.grammar_support,
        "token_counts": info.token_counts,
        "parallel_sequences": info.parallel_sequences,
        "lookup_draft_tokens": info.lookup_draft_tokens,
        "queue_depth": engine.queue_depth(),
    }
    extra = getattr(request.app.state, "health_extras", None)
    if extra is not None:
        body.update(extra())
    return body


@router.get("/v1/models")
async def list_models(engine: EngineDep) -> dict[str, Any]:
    created = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "codeact-server"}
            for name in served_names(engine)
        ],
    }


def generation_request(body: ChatCompletionRequest, engine: Engine) -> GenerationRequest:
    prompt = render_chatml(m.as_prompt_message() for m in body.messages)
    return GenerationRequest(
        prompt=prompt,
        max_tokens=body.token_budget(),
        temperature=body.temperature,
        top_p=body.top_p,
        stop=tuple(dict.fromkeys((*engine.info.stop, *body.stop_strings()))),
        seed=body.seed,
    )


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, engine: EngineDep, request: Request
) -> Response | dict[str, Any]:
    check_model(engine, body.model)
    handle = engine.submit(generation_request(body, engine))  # 503/400 raised here, at once
    completion_id = new_completion_id()
    if body.stream:
        include_usage = wants_usage(body.stream_options)
        return sse_response(_stream_chunks(handle, completion_id, body.model, include_usage))

    text = await collect_unless_disconnected(request, handle)
    if text is None:
        return Response(status_code=499)  # the client left; nobody reads this
    result = handle.result
    return chat_completion(
        completion_id, body.model, text, OPENAI_FINISH[result.finish_reason], usage_of(result)
    )


async def _stream_chunks(
    handle: Any, completion_id: str, model: str, include_usage: bool
) -> AsyncIterator[bytes]:
    created = int(time.time())
    try:
        yield sse_event(chat_chunk(completion_id, model, created, {"role": "assistant"}))
        async for piece in handle.stream():
            yield sse_event(chat_chunk(completion_id, model, created, {"content": piece}))
        result = handle.result
        finish = OPENAI_FINISH[result.finish_reason]
        yield sse_event(chat_chunk(completion_id, model, created, {}, finish_reason=finish))
        if include_usage:
            yield sse_event(
                chat_chunk(completion_id, model, created, None, usage=usage_of(result))  # type: ignore[arg-type]
            )
    except EngineError as exc:
        error = engine_error_to_api(exc)
        yield sse_event({"error": {"message": error.message, "type": error.type, "code": error.code}})
    finally:
        handle.cancel()  # no-op when finished; stops generation when the client went away
    yield DONE
