"""The error answers each route can give, for the OpenAPI document's ``responses``.

Why: clients generated from the OpenAPI document, and schemathesis' conformance checks,
treat a status code the document does not list as a bug. Every error leaves the server in
OpenAI's ``{"error": {...}}`` shape (``server.api.errors``), so one model describes them all.

Where each code comes from: 400 (bad JSON, refused or unsupported field, context
overflow), 401 (``server.api.auth``, with API keys), 403 (``server.api.host_guard``, foreign Host
or Origin), 404 (unknown model, session or file), 409 (a busy agent session), 413
(``server.api.request_limits``), 422 (wrong types), 429 (all agent sessions in use), 500 (the
engine failed), 501 (the engine has no tokenizer: ``/tokenize`` on a scripted engine or a
remote backend without one), 503 (queue full, or cut off by shutdown; both with Retry-After).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body."""

    error: ErrorDetail


_WHY = {
    400: "Invalid request: malformed JSON, an unsupported field or value, or a prompt over the context window",
    401: "Missing or invalid API key (only when the server runs with API keys)",
    403: "Host or Origin header not allowed (DNS-rebinding and cross-site protection)",
    404: "Unknown model, session or file",
    405: "Method not allowed on this path (the Allow header lists the allowed ones)",
    409: "The agent session is busy with another request",
    413: "Request body too large",
    422: "A field has the wrong type or value",
    429: "Every agent session slot is in use (Retry-After)",
    500: "The engine failed while generating",
    501: "This engine cannot tokenize (a scripted engine, or a remote backend without /tokenize)",
    503: "Generation queue full or server shutting down (Retry-After)",
}

GUARDS = (401, 403, 413, 422)
"""Codes any route behind the middleware and body validation can answer."""


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for these status codes, each with the error body model."""
    return {code: {"model": ErrorResponse, "description": _WHY[code]} for code in codes}


GENERATION = (400, 404, 500, 503)
"""Codes of a route that submits to the engine."""

CHAT_RESPONSES = error_responses(*GUARDS, *GENERATION)

AGENT_RESPONSES = error_responses(*GUARDS, 400, 404, 409, 429, 500, 503)
"""Every code the agent routes can answer (sessions add 409 busy and 429 all in use)."""

TOKENIZE_RESPONSES = error_responses(*GUARDS, 400, 500, 501)
"""``/tokenize`` and ``/detokenize``: 400 for an unknown token id, 501 without a tokenizer."""

OPEN_RESPONSES = error_responses(403, 413)
"""Routes open without an API key (``/health``) still pass the Host guard and body limit."""

EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer as JSON or, with stream=true, as Server-Sent Events ending in 'data: [DONE]'",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
}
"""The 200 of a route that streams when asked: its JSON answer, and ``text/event-stream``
beside it (clients and conformance checks read the content type off the document)."""
