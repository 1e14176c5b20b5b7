"""Bounds on what one request may ask for: body size, message count, max_tokens.

Without them one client can make the server parse a gigabyte of JSON, render a prompt
from a million messages, or hold the single generation slot for an hour. Each bound is a
setting and each refusal is a 4xx in OpenAI's error shape that names the setting:

- ``BodySizeLimit`` (ASGI middleware): 413 before the body is parsed, from
  ``Content-Length`` when there is one, else by counting a chunked body as it arrives.
- ``enforce_request_limits`` (a route dependency): 400 for too many ``messages`` or a
  ``max_tokens`` / ``max_completion_tokens`` over the cap. It reads the JSON FastAPI
  already parsed (Starlette caches it on the request), so nothing is parsed twice. It also
  refuses text that is not valid Unicode (a ``\\ud800`` escape with no partner), naming the
  field: no encoder downstream (the tokenizer, the audit log, the answer) can take it, and
  it turned chat and agent requests into 500s.
- ``publish_limits``: the same caps in the OpenAPI document (``maximum``, ``maxItems``),
  so that what the document calls valid is what this server, with these settings, accepts.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.errors import InvalidRequest, error_response

DRAIN_LIMIT = 64 * 1024 * 1024
"""Read and drop up to this much of an oversized body before answering 413, so the client
can finish sending and read the answer instead of seeing a reset connection."""


def _too_large(limit: int, size: int | None) -> Any:
    said = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return error_response(
        413,
        f"the request body is {said}; this server accepts at most {limit} bytes (setting max_request_bytes)",
        code="request_too_large",
    )


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await _drain(receive, declared)
                await _too_large(self.max_bytes, declared)(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server enforces Content-Length itself
            return
        # No Content-Length (chunked or no body): buffer up to the limit, then replay.
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _drain(receive, None)
                await _too_large(self.max_bytes, None)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _drain(receive: Receive, declared: int | None) -> None:
    """Discard the rest of the body, unless it is declared or turns out huge."""
    if declared is not None and declared > DRAIN_LIMIT:
        return
    seen = 0
    while seen <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        seen += len(message.get("body", b""))


async def enforce_request_limits(request: Request) -> None:
    """Route dependency: refuse too many messages or too large a max_tokens (400)."""
    if request.method != "POST":
        return
    try:
        body = await request.json()
    except ValueError:
        return  # malformed JSON: FastAPI's own 400 answers it
    if not isinstance(body, dict):
        return
    if _SURROGATE_ESCAPE.search(await request.body()):
        where = _lone_surrogate_at(body)
        if where is not None:
            raise InvalidRequest(
                f"{where}: the text holds a lone surrogate (a \\ud800-\\udfff escape without its pair), "
                "which is not valid Unicode",
                code="invalid_unicode",
                param=where,
            )
    settings = request.app.state.settings
    messages = body.get("messages")
    if isinstance(messages, list) and len(messages) > settings.max_messages:
        raise InvalidRequest(
            f"the request has {len(messages)} messages; this server accepts at most "
            f"{settings.max_messages} (setting max_messages)",
            code="too_many_messages",
            param="messages",
        )
    for field in ("max_tokens", "max_completion_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > settings.max_tokens_limit:
            raise InvalidRequest(
                f"{field} is {value}; this server allows at most {settings.max_tokens_limit} "
                "(setting max_tokens_limit)",
                code="max_tokens_too_large",
                param=field,
            )


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate_at(body: Any) -> str | None:
    """The path (``messages[0].content``) of the first string holding a lone surrogate."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path or "body"
        elif isinstance(value, dict):
            stack.extend((f"{path}.{key}" if path else str(key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in reversed(list(enumerate(value))))
    return None


TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
"""Request fields capped by ``max_tokens_limit`` (``max_output_tokens`` is /v1/responses')."""


def publish_limits(
    document: dict[str, Any], max_tokens: int, max_messages: int, vocab_size: int | None = None
) -> dict[str, Any]:
    """Write the configured caps into an OpenAPI document's schemas, in place.

    Why at run time: the caps are settings, so the pydantic models cannot carry them; a
    document without them promises that ``max_tokens: 100000`` is fine, and a client
    generated from it (or schemathesis) meets a 400 the document did not foresee. The same
    holds for token ids (``/detokenize``): the model's vocabulary bounds them, when the
    engine knows it.
    """
    for schema in document.get("components", {}).get("schemas", {}).values():
        for name, prop in schema.get("properties", {}).items():
            for branch in [prop, *prop.get("anyOf", ())]:
                if name in TOKEN_FIELDS and branch.get("type") == "integer":
                    branch["maximum"] = min(branch.get("maximum", max_tokens), max_tokens)
                elif name == "messages" and branch.get("type") == "array":
                    branch["maxItems"] = min(branch.get("maxItems", max_messages), max_messages)
                elif name == "tokens" and vocab_size and branch.get("items", {}).get("type") == "integer":
                    branch["items"]["maximum"] = vocab_size - 1
    return document
