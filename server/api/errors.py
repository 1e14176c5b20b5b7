"""Errors leave the API in OpenAI's shape, with the right status code.

Error tree (HTTP side)::

    APIError(status, message, type, code, param, headers)   raised by the API, rendered as-is
    ├── InvalidRequest           400 invalid_request_error
    ├── ModelNotFound            404 model_not_found (param: model)
    └── NotFound                 404 not_found

Other layers' errors are translated here by type, never by matching message text:

- engine (``engine_error_to_api``; also the error event of a stream that fails midway):
  QueueFullError -> 503 ``queue_full`` (+ Retry-After), ContextOverflowError -> 400
  ``context_length_exceeded``, TokenizerUnavailableError -> 501 ``not_implemented``, any
  other EngineError -> 500 ``engine_error``;
- agent (``agent_error_to_api``): AgentRequestError -> 400 (its ``param``),
  SessionNotFound -> 404 ``not_found``, SessionBusy -> 409 ``session_busy``,
  TooManySessions -> 429 ``too_many_sessions`` (+ Retry-After);
- wire formats (``server.openai.errors``): RequestRefused -> 400, its ``param`` and ``code``;
- FastAPI's RequestValidationError -> 400 (body not JSON) or 422 naming the field;
  Starlette's HTTPException (unknown path, wrong method) -> its status, with every allowed
  method in a 405's Allow header.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from models.engine.api import ContextOverflowError, EngineError, QueueFullError, TokenizerUnavailableError
from server.agent.errors import AgentError, AgentRequestError, SessionBusy, SessionNotFound, TooManySessions
from server.api.json_body import EncodableJSONResponse
from server.openai.errors import RequestRefused

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error the client should see, in OpenAI's ``{"error": {...}}`` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002 - OpenAI's field name
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.type, self.code, self.param, self.headers)


class InvalidRequest(APIError):
    def __init__(self, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(400, message, code=code, param=param)


class ModelNotFound(APIError):
    def __init__(self, model: str, served: list[str]):
        super().__init__(
            404,
            f"model '{model}' is not served here; available: {', '.join(served)}",
            code="model_not_found",
            param="model",
        )


class NotFound(APIError):
    def __init__(self, message: str):
        super().__init__(404, message, code="not_found")


# How long a client refused for want of a session slot should wait (idle sessions expire).
SESSION_RETRY_AFTER_S = 5


def error_response(
    status: int,
    message: str,
    type: str = "invalid_request_error",  # noqa: A002
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return EncodableJSONResponse(body, status_code=status, headers=headers)


def engine_error_to_api(exc: EngineError) -> APIError:
    """Map an engine error to what the client sees."""
    if isinstance(exc, QueueFullError):
        return APIError(
            503,
            str(exc),
            type="server_busy",
            code="queue_full",
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    if isinstance(exc, ContextOverflowError):
        return APIError(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, TokenizerUnavailableError):
        return APIError(501, str(exc), type="not_implemented_error", code="not_implemented")
    return APIError(500, f"generation failed: {exc}", type="server_error", code="engine_error")


def agent_error_to_api(exc: AgentError) -> APIError:
    """Map an agent refusal to what the client sees."""
    message = str(exc)
    if isinstance(exc, AgentRequestError):
        return InvalidRequest(message, param=exc.param)
    if isinstance(exc, SessionNotFound):
        return NotFound(message)
    if isinstance(exc, SessionBusy):
        return APIError(409, message, code="session_busy", param="session_id")
    if isinstance(exc, TooManySessions):
        return APIError(
            429,
            message,
            type="rate_limit_error",
            code="too_many_sessions",
            headers={"Retry-After": str(SESSION_RETRY_AFTER_S)},
        )
    # An AgentError subclass added without a mapping here is our bug (a test guards this).
    return APIError(500, message, type="server_error", code="agent_error")


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str | None]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "the request body is not valid JSON", None
    first = errors[0] if errors else {}
    location = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return 422, f"{location or 'body'}: {first.get('msg', 'invalid value')}", location or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(EngineError)
    async def _engine_error(_: Request, exc: EngineError) -> JSONResponse:
        return engine_error_to_api(exc).response()

    @app.exception_handler(AgentError)
    async def _agent_error(_: Request, exc: AgentError) -> JSONResponse:
        return agent_error_to_api(exc).response()

    @app.exception_handler(RequestRefused)
    async def _refused(_: Request, exc: RequestRefused) -> JSONResponse:
        return InvalidRequest(str(exc), code=exc.code, param=exc.param).response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, param = _validation_message(exc)
        return error_response(status, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return error_response(exc.status_code, str(exc.detail), type=kind, headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method some route answers on this path (the ``Allow`` header of a 405).

    Starlette's own 405 names only the methods of the first route whose path matched, so
    a path served by two routes (``GET`` and ``DELETE`` of a session) lost the second.
    Each method is tried against the routes as routing itself would (``Route.matches``),
    so included routers are searched too.
    """
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
