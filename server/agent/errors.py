"""What the agent domain refuses, as its own error types (no HTTP in them).

The agent is driven over HTTP today and from the terminal through that same HTTP, but the
session store and the run preparation only say *what* went wrong; ``server.api.errors``
decides how a client sees it (status code, OpenAI error body, Retry-After). Keeping
fastapi and starlette out of ``server.agent`` is what lets the loop, the sessions and
their tests run without a web framework.

Error tree::

    AgentError                  base; every one is the caller's to fix or to retry
    ├── AgentRequestError       the request cannot run as asked (API: 400, ``param``)
    ├── SessionNotFound         no live session by that id (API: 404 not_found)
    ├── SessionBusy             the session is running another request (API: 409 session_busy)
    └── TooManySessions         every session is running or waiting for tool results (API: 429 too_many_sessions)

Mistakes of the *model* are not errors: they become observations and the loop goes on.
"""

from __future__ import annotations

__all__ = ["AgentError", "AgentRequestError", "SessionBusy", "SessionNotFound", "TooManySessions"]


class AgentError(Exception):
    """Base of the agent's refusals; ``str()`` is the sentence the client reads."""


class AgentRequestError(AgentError):
    """The request cannot run as asked; ``param`` names the request field at fault."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


class SessionNotFound(AgentError):
    """No live session has this id (never created, deleted, or expired)."""

    def __init__(self, session_id: str, message: str) -> None:
        super().__init__(message)
        self.session_id = session_id


class SessionBusy(AgentError):
    """One request at a time drives a session: its interpreter is one process."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id} is already running a request; wait for it to finish")
        self.session_id = session_id


class TooManySessions(AgentError):
    """``max_sessions`` sessions are live and none is idle: each runs a request or waits for its
    client's tool results (an idle one would have been closed to make room)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"all {limit} agent sessions are running a request or waiting for tool results; retry when one ends"
        )
        self.limit = limit
