"""OpenAI-compatible routes: health, model list, chat completions (stream and not)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request, Response

from models.engine.api import Engine, GenerationHandle, GenerationRequest
from models.engine.chat_format import render_chatml
from server.api.deps import EngineDep
from server.api.errors import ModelNotFound
from server.api.openapi_errors import CHAT_RESPONSES, EVENT_STREAM, GUARDS, OPEN_RESPONSES, error_responses
from server.api.streams.disconnect import collect_unless_disconnected
from server.api.streams.sse import openai_stream, sse_event, sse_response
from server.openai.logprobs import StreamedLogprobs, chat_logprobs, chat_logprobs_request
from server.openai.schemas import (
    OPENAI_FINISH,
    ChatCompletionRequest,
    chat_chunk,
    chat_completion,
    new_completion_id,
    usage_of,
    wants_usage,
)
from server.openai.structured_output import response_format_grammar
from server.openai.tool_calls import AnswerSplitter, ToolPlan, call_delta, parse_tool_calls, plan_tools, prompt_messages
from server.openai.unsupported import refuse

router = APIRouter()


def served_names(engine: Engine) -> list[str]:
    return [engine.info.model_id, *engine.info.aliases]


def check_model(engine: Engine, requested: str) -> None:
    """Refuse a model this server does not serve (404, as OpenAI does)."""
    if requested not in served_names(engine):
        raise ModelNotFound(requested, served_names(engine))


@router.get("/health", responses=OPEN_RESPONSES)
async def health(engine: EngineDep, request: Request) -> dict[str, Any]:
    info = engine.info
    body: dict[str, Any] = {
        "status": "ok",
        "model": info.model_id,
        "model_path": info.model_path,
        "backend": info.backend,
        "offloaded_layers": info.offloaded_layers,
        "total_layers": info.total_layers,
        # where the offloaded layers went, as ggml names the devices (llama.cpp engine only)
        "devices": list(getattr(info, "devices", ())),
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


@router.get("/v1/models", responses=error_responses(*GUARDS))
async def list_models(engine: EngineDep) -> dict[str, Any]:
    created = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "codeact-server"}
            for name in served_names(engine)
        ],
    }


def generation_request(body: ChatCompletionRequest, engine: Engine, plan: ToolPlan | None = None) -> GenerationRequest:
    prompt = render_chatml(prompt_messages(body.messages, plan))
    grammar = plan.grammar if plan is not None else response_format_grammar(body.response_format)
    if grammar is not None and engine.info.grammar_support == "none":
        field = "tools" if plan is not None else "response_format"
        raise refuse(field, "needs grammar-constrained generation, which this engine does not offer")
    return GenerationRequest(
        prompt=prompt,
        max_tokens=body.token_budget(),
        temperature=body.temperature,
        top_p=body.top_p,
        stop=tuple(dict.fromkeys((*engine.info.stop, *body.stop_strings()))),
        seed=body.seed,
        grammar=grammar,
        logprobs=chat_logprobs_request(engine, body.logprobs, body.top_logprobs),
    )


@router.post("/v1/chat/completions", response_model=None, responses={**CHAT_RESPONSES, **EVENT_STREAM})
async def chat_completions(
    body: ChatCompletionRequest, engine: EngineDep, request: Request
) -> Response | dict[str, Any]:
    check_model(engine, body.model)
    plan = plan_tools(body)
    handle = engine.submit(generation_request(body, engine, plan))  # 503/400 raised here, at once
    completion_id = new_completion_id()
    if body.stream:
        include_usage = wants_usage(body.stream_options)
        stream = _stream_chunks(handle, completion_id, body.model, include_usage, plan, bool(body.logprobs))
        return sse_response(openai_stream(stream))

    text = await collect_unless_disconnected(request, handle)
    if text is None:
        return Response(status_code=499)  # the client left; nobody reads this
    result = handle.result
    finish = OPENAI_FINISH[result.finish_reason]
    parsed = parse_tool_calls(text) if plan is not None else None
    reply = chat_completion(completion_id, body.model, text, finish, usage_of(result))
    reply["choices"][0]["logprobs"] = chat_logprobs(result.logprobs)
    if parsed is not None:
        reply["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": parsed.calls}
        if parsed.complete:
            reply["choices"][0]["finish_reason"] = "tool_calls"
    return reply


async def _stream_chunks(
    handle: GenerationHandle,
    completion_id: str,
    model: str,
    include_usage: bool,
    plan: ToolPlan | None = None,
    logprobs: bool = False,
) -> AsyncGenerator[bytes, None]:
    """Text deltas as they come, each with its tokens' logprobs when asked; with tools, a
    call's id and name as soon as they are written, then its arguments in pieces
    (``server.openai.tool_calls.AnswerSplitter``). ``openai_stream`` adds the error event
    and ``[DONE]``."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> bytes:
        body = chat_chunk(completion_id, model, created, delta, finish_reason=finish)
        body["choices"][0]["logprobs"] = logprobs
        return sse_event(body)

    tokens = StreamedLogprobs(handle) if logprobs else None

    def content(text: str) -> bytes:
        return chunk({"content": text}, logprobs=chat_logprobs(tokens.take(text)) if tokens else None)

    try:
        yield chunk({"role": "assistant"})
        splitter = AnswerSplitter(plan)
        async for piece in handle.stream():
            text, events = splitter.feed(piece)
            if text:
                yield content(text)
            for event in events:
                delta = call_delta(event, splitter.calls.calls)
                if delta is not None:
                    yield chunk(delta)
        result = handle.result
        finish = OPENAI_FINISH[result.finish_reason]
        if splitter.calls.complete:
            finish = "tool_calls"
        if leftover := splitter.leftover():
            yield content(leftover)
        yield chunk({}, finish, chat_logprobs(tokens.rest(result.logprobs)) if tokens else None)
        if include_usage:
            yield sse_event(
                chat_chunk(completion_id, model, created, None, usage=usage_of(result))  # type: ignore[arg-type]
            )
    finally:
        handle.cancel()  # no-op when finished; stops generation when the client went away
