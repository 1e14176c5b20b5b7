"""What a client sees when a shutdown cuts its request off.

On SIGTERM uvicorn stops accepting connections and lets in-flight requests finish for
``shutdown_grace`` seconds (``server.cli.main`` passes it as ``timeout_graceful_shutdown``);
then it cancels the request tasks that are still running and runs the lifespan shutdown,
which closes every agent session and so kills every sandbox worker.

A cancelled request would otherwise surface as a logged traceback and a bare 500. This
middleware answers it with a 503 in OpenAI's error shape (``Retry-After``: a restarted or
another replica can take it), as long as no part of the response was sent yet; a stream
that already started simply ends. Client disconnects do not come through here: they
cancel the work inside the route (``server.api.streams.disconnect``), not the request task.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.errors import error_response

log = logging.getLogger(__name__)


class AnswerCancelledRequests:
    """ASGI middleware: a request task cancelled before answering gets a 503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if started or task is None:
                raise
            task.uncancel()
            log.warning("%s %s cut off by the server shutting down", scope["method"], scope["path"])
            response = error_response(
                503,
                "the server is shutting down and stopped this request; retry it",
                type="server_error",
                code="shutting_down",
                headers={"Retry-After": "5", "Connection": "close"},
            )
            await response(scope, receive, send)
