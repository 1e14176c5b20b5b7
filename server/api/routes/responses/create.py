"""``POST /v1/responses``: a response made by one chat generation, or (with the
``code_interpreter`` tool) by an agent run; answered whole, streamed, or in the background.

Why one route for both: the request, its previous response, its limits, storing and
detaching are the same; only what makes the output differs (``chat_events`` or
``interpreter``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response

from server.api.auth import key_of
from server.api.deps import BackgroundDep, EngineDep, ResponsesDep, RuntimeDep, SettingsDep
from server.api.errors import InvalidRequest
from server.api.openapi_errors import AGENT_RESPONSES, EVENT_STREAM
from server.api.routes.chat import check_model, generation_request
from server.api.routes.responses.chat_events import chat_events, chat_output
from server.api.routes.responses.interpreter import interpret, prepare_interpretation
from server.api.routes.responses.interpreter_tool import interpreter_tool
from server.api.routes.responses.records import Remember, previous_response
from server.api.streams.background import BackgroundRuns
from server.api.streams.disconnect import collect_unless_disconnected
from server.api.streams.sse import sse_response
from server.openai.responses_items import ResponsesRequest, chat_request, input_messages, new_id, response_object
from server.openai.schemas import usage_of
from server.openai.tool_calls import parse_tool_calls, plan_tools
from server.settings import Settings

router = APIRouter()


def _check_limits(body: ResponsesRequest, settings: Settings) -> None:
    """The limits ``server.api.request_limits`` puts on chat bodies, in this API's field names."""
    if isinstance(body.input, list) and len(body.input) > settings.max_messages:
        raise InvalidRequest(
            f"the request has {len(body.input)} input items; this server accepts at most "
            f"{settings.max_messages} (setting max_messages)",
            code="too_many_messages",
            param="input",
        )
    if body.max_output_tokens is not None and body.max_output_tokens > settings.max_tokens_limit:
        raise InvalidRequest(
            f"max_output_tokens is {body.max_output_tokens}; this server allows at most "
            f"{settings.max_tokens_limit} (setting max_tokens_limit)",
            code="max_tokens_too_large",
            param="max_output_tokens",
        )


# With code_interpreter it runs the agent loop: sessions add 409 (busy) and 429 (all in use).
@router.post("/v1/responses", response_model=None, responses={**AGENT_RESPONSES, **EVENT_STREAM})
async def create_response(
    body: ResponsesRequest,
    engine: EngineDep,
    store: ResponsesDep,
    settings: SettingsDep,
    runtime: RuntimeDep,
    background: BackgroundDep,
    request: Request,
) -> Response | dict[str, Any]:
    check_model(engine, body.model)
    _check_limits(body, settings)
    owner = key_of(request)
    previous = await previous_response(store, body.previous_response_id, owner)
    history = previous.history if previous is not None else []
    turn = [*history, *input_messages(body.input)]
    remember_answer = Remember(store, body, turn, owner)
    if body.background:
        background.check_capacity(owner)  # before a session or a generation is taken
    tool = interpreter_tool(body)
    if tool is not None:
        container = previous.container_id if previous is not None else None
        containers: dict[str, str] = {}

        def remember(answer: dict[str, Any], container: str) -> None:
            containers[answer["id"]] = container
            remember_answer.soon(answer, container)

        it = await prepare_interpretation(body, tool, runtime, settings, request, history, container)
        if body.background:
            return await _detach(background, it.events(runtime, remember), body, remember_answer, containers)
        return await interpret(it, body, runtime, request, remember)
    chat = chat_request(body, history)
    plan = plan_tools(chat)
    handle = engine.submit(generation_request(chat, engine, plan))  # 503/400 raised here, at once
    response_id = new_id("resp")
    if body.background:
        events = chat_events(handle, response_id, body, plan, remember_answer)
        return await _detach(background, events, body, remember_answer)
    if body.stream:
        events = chat_events(handle, response_id, body, plan, remember_answer)
        return sse_response(events)
    text = await collect_unless_disconnected(request, handle)
    if text is None:
        return Response(status_code=499)  # the client left; nobody reads this
    result = handle.result
    parsed = parse_tool_calls(text) if plan is not None else None
    output, status, incomplete = chat_output(parsed, text, result.finish_reason, new_id("msg"))
    answer = response_object(
        response_id, body, status=status, output=output, usage=usage_of(result), incomplete=incomplete
    )
    await remember_answer(answer)
    return answer


async def _detach(
    runs: BackgroundRuns,
    events: AsyncIterator[bytes],
    body: ResponsesRequest,
    remember: Remember,
    containers: dict[str, str] | None = None,
) -> Response | dict[str, Any]:
    """Run ``events`` in the background: answer the response as it starts (or follow its
    stream, with ``stream: true``); no connection drives or cancels it from now on."""

    def on_end(response: dict[str, Any], outcome: str) -> None:
        if outcome not in ("completed", "incomplete"):  # finished ones stored themselves
            remember.soon(response, (containers or {}).get(response["id"]))

    run = await runs.start(events, on_end, owner=remember.owner)
    if body.stream:
        return sse_response(run.follow(None))
    return run.response
