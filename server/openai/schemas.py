"""Request and response shapes of the OpenAI-compatible API.

Requests are validated by pydantic (wrong types -> 422, malformed JSON -> 400, a field
that would change the answer but is not implemented -> 400 naming it); responses
are built by small functions so the streaming and non-streaming paths cannot disagree.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.engine.api import GenerationResult
from server.openai.unsupported import CHAT, refuse, refuse_unsupported

OPENAI_FINISH = {"stop": "stop", "length": "length", "cancelled": "stop"}


class ContentPart(BaseModel):
    """A content part; only ``text`` parts can be rendered.

    Validation takes any ``type`` so that ChatBody can refuse the others with a 400 naming
    the part (``messages[i].content[j]``) rather than a 422 listing union branches; the
    published schema says ``text`` only, which is what the server reads.
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(json_schema_extra={"enum": ["text"]}, description="only 'text' (others: 400)")
    text: str | None = None


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="the call's arguments as a JSON object in a string")


class ToolCall(BaseModel):
    """A call an earlier assistant turn made (OpenAI's ``message.tool_calls[i]``)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """A chat message: text content (other parts are refused), tool calls, tool results."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")

    def as_prompt_message(self) -> dict[str, str]:
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": self.text()}


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


def _document_function_required(schema: dict[str, Any]) -> None:
    """FunctionTool's published schema: ``function`` is required and not null (the routes
    answer a tool without one with a 400 naming it)."""
    schema["required"] = [*schema.get("required", []), "function"]
    function = schema["properties"]["function"]
    function.pop("default", None)
    function["anyOf"] = [branch for branch in function.get("anyOf", ()) if branch.get("type") != "null"]


class FunctionTool(BaseModel):
    """``{"type": "function", "function": {...}}``.

    Validation takes any ``type`` and a missing ``function`` so that the route can refuse
    them with a 400 naming the field (``tools[i].type``) rather than a 422 listing union
    branches; the published schema says what is accepted: a function tool with its function.
    """

    model_config = ConfigDict(extra="ignore", json_schema_extra=_document_function_required)

    type: str = Field(json_schema_extra={"enum": ["function"]}, description="only 'function' (others: 400)")
    function: FunctionDef | None = None


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: dict[str, Any]


class StreamOptions(BaseModel):
    include_usage: bool = False


def wants_usage(options: StreamOptions | None) -> bool:
    """Whether a stream should end with a usage chunk (OpenAI's ``stream_options``)."""
    return bool(options and options.include_usage)


def stop_list(value: str | list[str] | None) -> list[str] | None:
    """OpenAI's ``stop``: one string or a list of at most 16; empty strings dropped."""
    if value is None:
        return None
    stops = [value] if isinstance(value, str) else value
    if len(stops) > 16:
        raise ValueError("at most 16 stop strings")
    return [s for s in stops if s]


class ChatBody(BaseModel):
    """The chat-completions body, all but ``tools``, which means one thing per route:
    OpenAI's function declarations (``ChatCompletionRequest``) or, on ``/v1/agent``, Python
    tools the sandbox defines (``server.api.agent_schemas.AgentRequest``).

    Unknown fields are kept (``extra="allow"``) so that the route can refuse those that
    would change the answer (``server.openai.unsupported``); the others are ignored.
    """

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # The schema says 1 at most; validation lets larger values through to a 400 naming 'n'.
    n: int = Field(1, ge=1, json_schema_extra={"maximum": 1}, description="one choice per request (n > 1: 400)")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = Field(
        None, description="{'type': 'text' | 'json_object' | 'json_schema', ...}"
    )
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        return stop_list(value)

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> ChatBody:
        """A 400 naming a field that would change the answer but is not implemented.

        Raised as an APIError from inside validation (pydantic lets it through), so every
        route that takes this body refuses the same fields the same way.
        """
        refuse_unsupported({**(self.model_extra or {}), "n": self.n}, CHAT)
        for i, message in enumerate(self.messages):
            for j, part in enumerate(message.content if isinstance(message.content, list) else ()):
                if part.type != "text":
                    raise refuse(
                        f"messages[{i}].content[{j}]",
                        f"of type '{part.type}' is not supported: this server reads text only",
                    )
        return self

    def token_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def stop_strings(self) -> tuple[str, ...]:
        return tuple(self.stop or ())  # type: ignore[arg-type]


class ChatCompletionRequest(ChatBody):
    """The body of ``/v1/chat/completions``: with OpenAI's function tools."""

    tools: list[FunctionTool] | None = None


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage_of(result: GenerationResult) -> dict[str, int]:
    return usage_dict(result.prompt_tokens, result.completion_tokens)


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    completion_id: str,
    model: str,
    content: str,
    finish_reason: str,
    usage: dict[str, int],
    created: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage,
    }
    body.update(extra)
    return body


def chat_chunk(
    completion_id: str,
    model: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
        if delta is not None
        else [],
    }
    if usage is not None:
        chunk["usage"] = usage
    chunk.update(extra)
    return chunk
