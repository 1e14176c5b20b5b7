"""A Responses answer made by one chat generation: its output items, and its stream of typed
events as the tokens come (``server.api.routes.responses`` lists them).

As on chat completions, text that may still become a tool call is held back until it is
decided (``AnswerSplitter``); a call's arguments stream in pieces as generated.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from models.engine.api import EngineError, GenerationHandle
from server.api.routes.responses.records import Remember
from server.api.streams.sse import ResponsesEvents
from server.openai.responses_items import (
    ResponsesRequest,
    function_call_item,
    message_item,
    new_id,
    output_text_part,
    response_object,
)
from server.openai.schemas import usage_of
from server.openai.tool_calls import AnswerSplitter, CallEvent, CallStream, ToolPlan


def chat_output(
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


async def chat_events(
    handle: GenerationHandle,
    response_id: str,
    body: ResponsesRequest,
    plan: ToolPlan | None,
    remember: Remember,
) -> AsyncIterator[bytes]:
    """The response's events as the generation goes; ``remember`` stores it before the last."""
    event = ResponsesEvents()
    created = int(time.time())

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
        yield event.opening(snapshot("in_progress", []))
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
            output, status, incomplete = chat_output(calls, calls.text, result.finish_reason, message_id)
            if not calls.complete:  # cut short: close the last call as it stands
                yield event("response.output_item.done", output_index=len(output) - 1, item=output[-1])
        else:
            for chunk in [] if started else text_delta(""):
                yield chunk
            output, status, incomplete = chat_output(None, text, result.finish_reason, message_id)
            item = output[0]
            yield event("response.output_text.done", **where, text=text, logprobs=[])
            yield event("response.content_part.done", **where, part=output_text_part(text))
            yield event("response.output_item.done", output_index=0, item=item)
        answer = snapshot(status, output, usage=usage_of(result), incomplete=incomplete)
        await remember(answer)
        yield event(f"response.{status}", response=answer)
    except EngineError as exc:
        yield event.error(exc)
    finally:
        handle.cancel()  # no-op when finished; stops generation when the client went away
