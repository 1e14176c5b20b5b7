"""``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}``: OpenAI's Responses API.

The request is translated into a chat completion (``server.openai.responses_items``) and runs
through the same prompt, grammar and parsing as ``/v1/chat/completions``; only the shapes
differ. Function calls come back as ``function_call`` output items, text as one
``message`` item; a response cut by ``max_output_tokens`` has status ``incomplete``.

Streaming sends the standard typed events (``event:`` + ``data:`` lines, each with a
``sequence_number``): ``response.created``, ``response.in_progress``, then per item
``response.output_item.added`` / ``response.content_part.added`` /
``response.output_text.delta``... ``.done`` (or ``response.function_call_arguments.delta``
/ ``.done`` for a call), and ``response.completed`` (``response.incomplete`` when cut)
carrying the whole response. As on chat completions, text that may still become a tool
call is held back until it is decided; a call's arguments stream in pieces as generated.

``previous_response_id`` continues from a stored response: its conversation (without its
``instructions``, as OpenAI does) plus its output come before the new input. Responses are
kept in the server's store (``server.store``: on disk unless ``--store none``, so a restart
keeps them; pruned by age and size) when ``store`` is true (the default), each readable only
with the API key that made it; a pruned, deleted or unstored id is a 404 naming it.

A request whose tools hold ``code_interpreter`` runs the agent loop instead, in a sandbox
session that is its container (``server.api.routes.responses_interpreter``).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from models.engine.api import EngineError, GenerationHandle
from server.api.auth import key_of
from server.api.deps import EngineDep, SettingsDep
from server.api.errors import APIError, InvalidRequest, NotFound, engine_error_to_api
from server.api.openapi_errors import AGENT_RESPONSES, EVENT_STREAM, GUARDS, error_responses
from server.api.routes.agent import BackgroundDep, RuntimeDep
from server.api.routes.chat import check_model, generation_request
from server.api.routes.code_interpreter import interpreter_tool
from server.api.routes.responses_interpreter import interpret, prepare_interpretation
from server.api.streams.background import BackgroundRuns
from server.api.streams.disconnect import collect_unless_disconnected
from server.api.streams.sse import sse_response
from server.openai.responses_items import (
    ResponsesRequest,
    chat_request,
    function_call_item,
    input_item_list,
    input_messages,
    message_item,
    new_id,
    output_messages,
    output_text_part,
    response_object,
)
from server.openai.schemas import usage_of
from server.openai.tool_calls import AnswerSplitter, CallEvent, CallStream, ToolPlan, parse_tool_calls, plan_tools
from server.settings import Settings
from server.store import ResponseRecords, StoredResponse

router = APIRouter()


def get_store(request: Request) -> ResponseRecords:
    return request.app.state.responses


StoreDep = Annotated[ResponseRecords, Depends(get_store)]


class Remember:
    """Stores the answers of one request (when its ``store`` is true) as its key's records."""

    def __init__(self, store: ResponseRecords, body: ResponsesRequest, turn: list[dict[str, Any]], owner: str) -> None:
        self.store, self.body, self.turn, self.owner = store, body, turn, owner

    async def __call__(self, answer: dict[str, Any], container_id: str | None = None) -> None:
        """Store ``answer``; returns once it is on disk (the client is told it is done after)."""
        if self.body.store:
            await self.soon(answer, container_id)

    def soon(self, answer: dict[str, Any], container_id: str | None = None) -> Any:
        """Store ``answer`` without waiting (from a callback that cannot await); the write's
        future, or None when the request is not stored."""
        if not self.body.store:
            return None
        history = [*self.turn, *output_messages(answer["output"])]
        return self.store.put(
            StoredResponse(answer, history, input_item_list(self.body.input), container_id, self.owner)
        )


async def _previous(store: ResponseRecords, response_id: str | None, owner: str) -> StoredResponse | None:
    if response_id is None:
        return None
    previous = await store.get(response_id, owner)
    if previous is None:
        raise APIError(
            404,
            f"no stored response '{response_id}' (it was created with store: false, deleted, "
            "or dropped by the store's retention limits)",
            code="not_found",
            param="previous_response_id",
        )
    return previous


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


def _output(
    parsed: CallStream | None, text: str, finish_reason: str, message_id: str
) -> tuple[list[dict[str, Any]], str, str | None]:
    """Output items (the calls, else one message), the response's status, and why it is
    incomplete (if it is)."""
    if parsed is not None and parsed.complete:
        return [function_call_item(c) for c in parsed.calls], "completed", None
    cut = finish_reason == "length"
    status = "incomplete" if cut else "completed"
    if parsed is not None:  # a call cut short: its arguments as far as they got
        output = [function_call_item(c) for c in parsed.calls[:-1]]
        output.append(function_call_item(parsed.calls[-1], status))
    else:
        output = [message_item(message_id, text, status)]
    return output, status, "max_output_tokens" if cut else None


# With code_interpreter it runs the agent loop: sessions add 409 (busy) and 429 (all in use).
@router.post("/v1/responses", response_model=None, responses={**AGENT_RESPONSES, **EVENT_STREAM})
async def create_response(
    body: ResponsesRequest,
    engine: EngineDep,
    store: StoreDep,
    settings: SettingsDep,
    runtime: RuntimeDep,
    background: BackgroundDep,
    request: Request,
) -> Response | dict[str, Any]:
    check_model(engine, body.model)
    _check_limits(body, settings)
    owner = key_of(request)
    previous = await _previous(store, body.previous_response_id, owner)
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
        events = _events(handle, response_id, body, plan, remember_answer)
        return await _detach(background, events, body, remember_answer)
    if body.stream:
        events = _events(handle, response_id, body, plan, remember_answer)
        return sse_response(events)
    text = await collect_unless_disconnected(request, handle)
    if text is None:
        return Response(status_code=499)  # the client left; nobody reads this
    result = handle.result
    parsed = parse_tool_calls(text) if plan is not None else None
    output, status, incomplete = _output(parsed, text, result.finish_reason, new_id("msg"))
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


@router.get(
    "/v1/responses/{response_id}", response_model=None, responses={**error_responses(*GUARDS, 400, 404), **EVENT_STREAM}
)
async def get_response(
    response_id: str,
    store: StoreDep,
    background: BackgroundDep,
    request: Request,
    stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=-1)] = None,
) -> Response | dict[str, Any]:
    """A stored response; a background one as it stands now, or (``stream``) its events after
    ``starting_after``, then the live ones until it ends."""
    owner = key_of(request)
    run = await background.find(response_id, owner)
    if run is None:
        stored = await store.get(response_id, owner)
        if stored is None:
            raise NotFound(f"no stored response '{response_id}'")
        if stream or starting_after is not None:
            raise InvalidRequest(
                "only a background response (created with background: true) can be streamed again",
                param="stream" if stream else "starting_after",
            )
        return stored.response
    if not stream:
        if starting_after is not None:
            raise InvalidRequest("starting_after needs stream=true", param="starting_after")
        return run.response
    run.check_resumable(starting_after)  # a 400 now, not after the stream began
    if starting_after is not None:
        background.count_resumption()
    return sse_response(run.follow(starting_after))


@router.post("/v1/responses/{response_id}/cancel", responses=error_responses(*GUARDS, 400, 404))
async def cancel_response(
    response_id: str, store: StoreDep, background: BackgroundDep, request: Request
) -> dict[str, Any]:
    """Stop a background response (its generation and sandbox work); a finished one is
    answered as it is."""
    owner = key_of(request)
    run = await background.find(response_id, owner)
    if run is None:
        if await store.get(response_id, owner) is None:
            raise NotFound(f"no stored response '{response_id}'")
        raise InvalidRequest(
            f"response '{response_id}' was not created with background: true; only background "
            "responses can be cancelled",
            param="response_id",
        )
    await run.cancel()
    return run.response


@router.get("/v1/responses/{response_id}/input_items", responses=error_responses(*GUARDS, 404))
async def list_input_items(
    response_id: str, store: StoreDep, request: Request, order: Literal["asc", "desc"] = "desc"
) -> dict[str, Any]:
    """The request's own input items (not those of earlier responses), newest first by default."""
    stored = await store.get(response_id, key_of(request))
    if stored is None:
        raise NotFound(f"no stored response '{response_id}'")
    items = stored.input_items if order == "asc" else stored.input_items[::-1]
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": False,
    }


@router.delete("/v1/responses/{response_id}", responses=error_responses(*GUARDS, 404))
async def delete_response(response_id: str, store: StoreDep, request: Request) -> dict[str, Any]:
    """Delete a stored response from the store (from disk), and a background run's record with it."""
    owner = key_of(request)
    if not await store.delete(response_id, owner):
        raise NotFound(f"no stored response '{response_id}'")
    return {"id": response_id, "object": "response.deleted", "deleted": True}


# --- streaming --------------------------------------------------------------------------------


async def _events(
    handle: GenerationHandle,
    response_id: str,
    body: ResponsesRequest,
    plan: ToolPlan | None,
    remember: Remember,
) -> AsyncIterator[bytes]:
    numbers = itertools.count()
    created = int(time.time())

    def event(kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": next(numbers), **fields}
        return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

    def snapshot(status: str, output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return response_object(response_id, body, status=status, output=output, created_at=created, **extra)

    message_id = new_id("msg")
    where = {"item_id": message_id, "output_index": 0, "content_index": 0}
    text, started = "", False

    def text_delta(piece: str) -> list[bytes]:
        nonlocal text, started
        events = []
        if not started:
            started = True
            events.append(
                event("response.output_item.added", output_index=0, item=message_item(message_id, "", "in_progress"))
            )
            events.append(event("response.content_part.added", **where, part=output_text_part("")))
        text += piece
        events.append(event("response.output_text.delta", **where, delta=piece, logprobs=[]))
        return events

    def call_events(change: CallEvent, calls: list[dict[str, Any]]) -> list[bytes]:
        item = function_call_item(calls[change.index], "in_progress")
        ref = {"item_id": item["id"], "output_index": change.index}
        if change.kind == "start":
            return [event("response.output_item.added", output_index=change.index, item=item)]
        if change.kind == "arguments":
            return [event("response.function_call_arguments.delta", **ref, delta=change.text)]
        done = function_call_item(calls[change.index])
        return [
            event("response.function_call_arguments.done", **ref, name=done["name"], arguments=done["arguments"]),
            event("response.output_item.done", output_index=change.index, item=done),
        ]

    try:
        yield event("response.created", response=snapshot("in_progress", []))
        yield event("response.in_progress", response=snapshot("in_progress", []))
        splitter = AnswerSplitter(plan)
        async for piece in handle.stream():
            shown, changes = splitter.feed(piece)
            for chunk in text_delta(shown) if shown else []:
                yield chunk
            for change in changes:
                for chunk in call_events(change, splitter.calls.calls):
                    yield chunk
        result = handle.result
        for chunk in text_delta(leftover) if (leftover := splitter.leftover()) else []:
            yield chunk
        calls = splitter.calls
        if calls.calls:
            output, status, incomplete = _output(calls, calls.text, result.finish_reason, message_id)
            if not calls.complete:  # cut short: close the last call as it stands
                yield event("response.output_item.done", output_index=len(output) - 1, item=output[-1])
        else:
            for chunk in [] if started else text_delta(""):
                yield chunk
            output, status, incomplete = _output(None, text, result.finish_reason, message_id)
            item = output[0]
            yield event("response.output_text.done", **where, text=text, logprobs=[])
            yield event("response.content_part.done", **where, part=output_text_part(text))
            yield event("response.output_item.done", output_index=0, item=item)
        answer = snapshot(status, output, usage=usage_of(result), incomplete=incomplete)
        await remember(answer)
        yield event(f"response.{status}", response=answer)
    except EngineError as exc:
        error = engine_error_to_api(exc)
        yield event("error", code=error.code, message=error.message, param=None)
    finally:
        handle.cancel()  # no-op when finished; stops generation when the client went away
