"""The Responses API's shapes: its request body, input items -> chat messages, output items.

Why a translation rather than a second pipeline: ``POST /v1/responses`` asks for the same
thing as a chat completion (a conversation, function tools, a text format), in other
words. Turning its input into a ``ChatCompletionRequest`` lets it reuse every part that is
already tested there: the prompt, the ``<tool_call>`` grammar and parsing
(``server.openai.tool_calls``), structured outputs (``server.openai.structured_output``), the refusals.

Mapping:

- ``instructions`` -> a system message first (not carried to a follow-up response, as
  OpenAI does);
- message items (``role`` + text or ``input_text``/``output_text`` parts) -> chat messages;
- ``function_call`` items -> an assistant message's ``tool_calls``; ``function_call_output``
  -> a ``tool`` message;
- function tools (``{"type": "function", "name": ...}``, flat) -> chat tools; other tool
  types (web search, file search, ...) are refused, naming the tool; ``code_interpreter``
  does not come here: it runs the agent loop (``server.api.routes.responses.interpreter``);
- ``text.format`` -> ``response_format``.

Fields that would change the answer but are not implemented are refused with a 400 that
names them (``server.openai.unsupported``).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from server.openai.errors import RequestRefused
from server.openai.schemas import ChatCompletionRequest, ChatMessage
from server.openai.unsupported import Rule, refuse, refuse_unsupported

RESPONSES_RULES = (
    Rule("conversation", lambda v: v is None, "(conversation objects) is not supported; use previous_response_id"),
    Rule("prompt", lambda v: v is None, "(stored prompt templates) is not supported by this server"),
    Rule(
        "include",
        lambda v: not v or (isinstance(v, list) and all(i == "code_interpreter_call.outputs" for i in v)),
        "is not supported beyond 'code_interpreter_call.outputs' (always included)",
    ),
    Rule("top_logprobs", lambda v: not v, "is not supported on /v1/responses yet"),
    Rule("truncation", lambda v: v in (None, "disabled"), "'auto' is not supported: prompts are never truncated"),
)


class ResponsesRequest(BaseModel):
    """``POST /v1/responses``; unknown fields are kept so that the route can refuse them.

    The schema says what the validator refuses (a background response that is not stored), so
    a request the OpenAPI document calls valid is never a 400."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "if": {"properties": {"background": {"const": True}}, "required": ["background"]},
            "then": {"properties": {"store": {"const": True}}},
        },
    )

    model: str
    input: Annotated[str, Field(min_length=1)] | Annotated[list[dict[str, Any]], Field(min_length=1)]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    background: bool = Field(False, description="run detached from this connection; poll, stream or cancel it by id")
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    text: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    max_tool_calls: int | None = Field(None, ge=1, le=49, description="code_interpreter only: runs before the answer")

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> ResponsesRequest:
        refuse_unsupported(self.model_extra or {}, RESPONSES_RULES)
        if self.background and not self.store:
            raise RequestRefused("background responses must be stored: send store: true", param="store")
        return self


def _text_of(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise RequestRefused(f"'{where}' must be a string or a list of parts", param=where)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "output_text", "text"):
            raise refuse(f"{where}[{j}]", f"of type '{kind}' is not supported: this server reads text only")
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def input_messages(items: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as chat-completions messages (plain dicts, validated later)."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        where = f"input[{i}]"
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise RequestRefused(f"'{where}.role' must be user, system, developer or assistant", param=where)
            messages.append({"role": role, "content": _text_of(item.get("content"), f"{where}.content")})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id") or item.get("id") or "",
                "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "{}")},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls") is not None:
                last["tool_calls"].append(call)  # parallel calls of one turn stay together
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "mcp_approval_response":
            continue  # a decision, not a message: the code interpreter's route reads it
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _text_of(output, f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": item.get("call_id", ""), "content": text})
        else:
            raise refuse(f"{where}.type", f"'{kind}' is not supported as an input item here")
    return messages


def input_item_list(items: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The input as Responses items, each with an id (``GET .../input_items`` lists them)."""
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": items}]}]
    listed = []
    for item in items:
        entry = {"type": "message", **item}
        if entry["type"] == "message":
            entry.setdefault("status", "completed")
            if isinstance(entry.get("content"), str):
                entry["content"] = [{"type": "input_text", "text": entry["content"]}]
        entry.setdefault("id", new_id("msg" if entry["type"] == "message" else "item"))
        listed.append(entry)
    return listed


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    converted = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise refuse(f"tools[{i}].type", f"'{tool.get('type')}' is not supported: only function tools")
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        converted.append({"type": "function", "function": function})
    return converted


def chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise refuse("tool_choice.type", f"'{choice.get('type')}' is not supported: only function tools")
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def chat_response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if not fmt or fmt.get("type") != "json_schema":
        return fmt
    spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
    return {"type": "json_schema", "json_schema": spec}


def chat_request(body: ResponsesRequest, history: list[dict[str, Any]]) -> ChatCompletionRequest:
    """The equivalent chat-completions body (``history``: earlier turns, without instructions)."""
    if body.max_tool_calls is not None:
        raise refuse("max_tool_calls", "is supported with code_interpreter only (function calls are the client's)")
    for i, item in enumerate(body.input if isinstance(body.input, list) else []):
        if item.get("type") == "mcp_approval_response":
            raise refuse(
                f"input[{i}]", "(mcp_approval_response) decides a call of agent code: send it with code_interpreter"
            )
    messages = [*history, *input_messages(body.input)]
    if body.instructions:
        messages.insert(0, {"role": "system", "content": body.instructions})
    try:
        return ChatCompletionRequest.model_validate(_chat_fields(body, messages))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise RequestRefused(f"'{where}' (as a chat request): {first.get('msg')}", param=where or None) from exc


def _chat_fields(body: ResponsesRequest, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": body.model,
        "messages": messages,
        "max_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "tools": chat_tools(body.tools),
        "tool_choice": chat_tool_choice(body.tool_choice),
        "parallel_tool_calls": body.parallel_tool_calls,
        "response_format": chat_response_format(body.text),
    }


def message_dicts(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in messages]


# --- output ------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [] if status == "in_progress" else [output_text_part(text)],
    }


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """A chat ``tool_calls`` entry as a Responses ``function_call`` item."""
    return {
        "type": "function_call",
        "id": "fc_" + call["id"].removeprefix("call_"),
        "call_id": call["id"],
        "name": call["function"]["name"],
        "arguments": "" if status == "in_progress" else call["function"]["arguments"],
        "status": status,
    }


def output_messages(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A response's output as chat messages, to continue from it (``previous_response_id``)."""
    calls = [
        {"id": o["call_id"], "type": "function", "function": {"name": o["name"], "arguments": o["arguments"]}}
        for o in output
        if o["type"] == "function_call"
    ]
    text = "".join(p["text"] for o in output if o["type"] == "message" for p in o["content"])
    if calls:
        return [{"role": "assistant", "content": text or None, "tool_calls": calls}]
    return [{"role": "assistant", "content": text}]


def response_object(
    response_id: str,
    body: ResponsesRequest,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, int] | None = None,
    incomplete: str | None = None,
    created_at: int | None = None,
) -> dict[str, Any]:
    """The ``response`` object, as ``POST``/``GET`` answer it and stream events carry it."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at or int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "model": body.model,
        "output": output,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "store": body.store,
        "background": body.background,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "tool_choice": body.tool_choice or "auto",
        "tools": body.tools or [],
        "text": body.text or {"format": {"type": "text"}},
        "truncation": "disabled",
        "metadata": body.metadata or {},
        "usage": _usage(usage) if usage is not None else None,
    }


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Chat-shaped usage as Responses names it; an agent run's ``sandbox`` block rides along
    (the official client's ``ResponseUsage`` keeps fields it does not know)."""
    shaped = {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage["total_tokens"],
    }
    if usage.get("sandbox") is not None:
        shaped["sandbox"] = usage["sandbox"]
    return shaped
