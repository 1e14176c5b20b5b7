"""Agent sessions: a conversation, its sandbox worker and its steps, kept between requests.

A session is created by the first ``/v1/agent`` request without ``session_id`` and lives
until it is deleted, idles past the TTL, or the server stops. One request at a time may
drive a session (the interpreter is one process); a second gets ``SessionBusy``. At
``max_sessions`` the least recently used *idle* session is closed to make room (a one-shot
client never comes back, and 32 of them locked everyone out for half an hour); only when
every session is running a request, or waits for its client's tool results, is a new one
refused (``TooManySessions``). A session closed for room, by its TTL or by a delete answers
``SessionNotFound`` saying which, for the last ``CLOSED_REMEMBERED`` of them. The errors are
the agent's own (``server.agent.errors``); the API gives them their status codes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.executor import SessionExecutor, on_own_thread
from server.agent.errors import SessionNotFound, TooManySessions
from server.agent.steps import Step
from server.tools.toolbox import ToolSpec

log = logging.getLogger(__name__)

#: Closed sessions whose reason a later request is told (ids and a sentence each).
CLOSED_REMEMBERED = 1000


@dataclass
class Session:
    """One conversation with its own interpreter state."""

    id: str
    executor: SessionExecutor
    messages: list[dict[str, str]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    tools: list[ToolSpec] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Parks calls of the client's function tools (server.tools.client_calls); None without them.
    bridge: Any = None
    #: The run waiting for the client's tool results (server.agent.suspend), else None.
    run: Any = None
    #: Its tool calls waiting for a person's approval (server.tools.approvals.gate); None without any.
    approvals: Any = None

    @property
    def workspace(self) -> Path:
        return self.executor.workspace

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": int(self.created_at),
            "turns": len(self.steps),
            "busy": self.lock.locked(),
            "tools": [t.name for t in self.tools],
        }


class SessionStore:
    """Live sessions by id, bounded in number and idle time."""

    def __init__(
        self,
        make_executor: Callable[[], SessionExecutor],
        max_sessions: int,
        ttl_s: float,
    ) -> None:
        self._make_executor = make_executor
        self._sessions: dict[str, Session] = {}
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self._creating = 0
        self._closed_why: OrderedDict[str, str] = OrderedDict()
        #: Called once for each session closed to make room (the metrics count them).
        self.on_evict: Callable[[], None] | None = None
        #: Called with (session id, why) for each session closed by room, idle time or delete
        #: (the store records it, so the reason outlives a restart).
        self.on_closed: Callable[[str, str], None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    async def create(self) -> Session:
        """A new session with a fresh sandbox worker (from the pool when there is one)."""
        self.expire_idle()
        if len(self._sessions) + self._creating >= self.max_sessions:
            self._make_room()
        self._creating += 1
        try:
            executor = await on_own_thread(self._make_executor, name="sandbox-start")
        finally:
            self._creating -= 1
        session = Session(id=f"sess_{uuid.uuid4().hex[:20]}", executor=executor)
        self._sessions[session.id] = session
        return session

    def _make_room(self) -> None:
        """Close the least recently used idle session, or refuse (TooManySessions)."""
        idle = [s for s in self._sessions.values() if not s.lock.locked() and s.run is None]
        if not idle:
            raise TooManySessions(self.max_sessions)
        victim = min(idle, key=lambda s: s.last_used)
        del self._sessions[victim.id]
        self._remember(
            victim.id,
            f"agent session '{victim.id}' was closed to make room for a new one: this server keeps at most "
            f"{self.max_sessions} sessions, and it was the least recently used idle one",
        )
        self._close_soon(victim)
        log.info("closed idle agent session %s to make room", victim.id)
        if self.on_evict is not None:
            self.on_evict()

    def _remember(self, session_id: str, why: str) -> None:
        self.remember_closed([(session_id, why)])
        if self.on_closed is not None:
            self.on_closed(session_id, why)

    def remember_closed(self, closed: list[tuple[str, str]]) -> None:
        """Tell later requests why these sessions (id, why) are gone; at start-up, those an
        earlier process had (read from the store)."""
        for session_id, why in closed:
            self._closed_why[session_id] = why
        while len(self._closed_why) > CLOSED_REMEMBERED:
            self._closed_why.popitem(last=False)

    def _not_found(self, session_id: str, unknown: str) -> SessionNotFound:
        """The 404 for `session_id`: why it was closed when that is remembered, else `unknown`."""
        return SessionNotFound(session_id, self._closed_why.get(session_id) or unknown)

    def get(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise self._not_found(session_id, f"no agent session '{session_id}' (it may have expired or been deleted)")
        session.last_used = time.monotonic()
        return session

    def delete(self, session_id: str) -> None:
        """Forget the session now; its worker is stopped on a thread of its own (see `_close_soon`)."""
        self._close_soon(self._remove(session_id))

    async def delete_off_loop(self, session_id: str) -> None:
        """Forget the session now; stop its worker on a thread and wait for that.

        Why: stopping a worker (signal the tree, wait for it, remove the workspace) takes
        ~10-15 ms, and on the event loop it would stall every other request and stream.
        """
        session = self._remove(session_id)
        await on_own_thread(self._close, session, name="sandbox-close")

    def _remove(self, session_id: str) -> Session:
        session = self._sessions.pop(session_id, None)
        if session is None:
            raise self._not_found(session_id, f"no agent session '{session_id}'")
        self._remember(session_id, f"agent session '{session_id}' was deleted")
        return session

    def expire_idle(self) -> int:
        """Close sessions idle longer than the TTL (never one that is running)."""
        now = time.monotonic()
        expired = [s for s in self._sessions.values() if not s.lock.locked() and now - s.last_used > self.ttl_s]
        for session in expired:
            del self._sessions[session.id]
            self._remember(session.id, f"agent session '{session.id}' was closed after idling {self.ttl_s:g} s")
            self._close_soon(session)
            log.info("closing idle agent session %s", session.id)
        return len(expired)

    def close_all(self, timeout: float = 15.0) -> None:
        """Stop every session's worker, in parallel, waiting at most `timeout` seconds."""
        sessions = list(self._sessions.values())
        self._sessions.clear()
        closers = [self._close_soon(session) for session in sessions]
        deadline = time.monotonic() + timeout
        for closer in closers:
            closer.join(max(deadline - time.monotonic(), 0.0))

    def _close_soon(self, session: Session) -> threading.Thread:
        """Stop the session's worker on a thread of its own and return at once.

        Why never inline: this is called on the event loop (the reaper, a refused request),
        and closing waits for the worker's tree to die and for a run in flight to notice, so
        one hostile or stuck session would stall every other request and ``/health``.
        """
        closer = threading.Thread(target=self._close, args=(session,), name=f"close-{session.id}", daemon=True)
        closer.start()
        return closer

    def waiting_for(self, tool_call_id: str) -> Session | None:
        """The session whose suspended run waits for this client tool call."""
        for session in self._sessions.values():
            if session.bridge is not None and session.bridge.waits_for(tool_call_id):
                session.last_used = time.monotonic()
                return session
        return None

    @staticmethod
    def _close(session: Session) -> None:
        if session.run is not None:
            session.run.close()
        try:
            session.executor.close()
        except Exception:  # noqa: BLE001 - closing must not stop closing the others
            log.exception("closing the sandbox of session %s failed", session.id)
