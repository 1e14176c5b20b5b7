"""Pending approvals of one session: a tool call from agent code waits here for a person.

How a call waits: a guarded tool's ``start`` (the session's `HostCallHandler` calls it from the
thread that runs the sandbox execution) opens an `ApprovalRequest` and returns a future at
once, as every host call does (``sandbox.host_calls``), so the sandbox blocks in the call
while its execution's wall clock is paused by the bridge. The request is announced on the
session's announcement queue, the one client tool calls use (``server.tools.client_calls``):
the run (``server.agent.suspend``) yields it as an `ApprovalPending` event, and the API asks.
A decision comes back through `Approvals.decide`; approved, the real call starts and its
outcome becomes the future's; denied, the future fails with `HostCallDenied`, which the code
sees as ``PermissionError`` with the reason.

Why the safety lives here: the code being guarded runs in the sandbox and may reach the
server's HTTP API (with network enabled), so an approval id is 192 random bits, never sent
down the worker's pipe, and found only together with its session and the API key of the run
that made it (`find`). A run that is cancelled, or a sandbox that closes, cancels its calls:
the pending requests are then denied (``by: "cancelled"``). No answer within the timeout
denies (``by: "timeout"``). Every decision is handed to ``on_decision`` (the audit log).

The timeout is bounded by the bridge's own wait budget for the call (``--tool-wait-limit``):
a person who decides after the bridge gave up would approve a call nobody waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from sandbox.host_calls import NO_LIMIT, HostCallDenied
from server.tools.toolbox import HostTool

log = logging.getLogger(__name__)

#: A guarded call's approval wait ends this long before the bridge's deadline, so the code
#: sees the denial (PermissionError), not the bridge's timeout.
DEADLINE_MARGIN_S = 2.0

#: ``on_decision(record)``: one decision as plain JSON (the audit log's line).
OnDecision = Callable[[dict[str, Any]], None]


def new_approval_id() -> str:
    """An id nobody can guess: 192 random bits (OpenAI's ``mcpr_`` prefix)."""
    return "mcpr_" + secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Decision:
    approve: bool
    reason: str | None
    #: Who decided: ``api`` (an API request, ``key`` says whose), ``timeout`` or ``cancelled``.
    by: str
    key: str = ""


@dataclass
class ApprovalRequest:
    """One call of a guarded tool, waiting for a decision."""

    id: str
    session_id: str
    owner: str  # the API key (digest) of the run that made the call: only it may decide
    server: str
    tool: str  # the MCP server's name for the tool
    function: str  # its Python name in the sandbox
    arguments: dict[str, Any]
    timeout: float
    created: float = field(default_factory=time.time)
    decision: Decision | None = None

    def to_json(self) -> dict[str, Any]:
        """What a client is shown: never the owner."""
        return {
            "id": self.id,
            "session_id": self.session_id,
            "server": self.server,
            "tool": self.tool,
            "function": self.function,
            "arguments": self.arguments,
            "created": int(self.created),
            "expires_in": max(0, round(self.created + self.timeout - time.time())),
        }


@dataclass(frozen=True)
class ApprovalPending:
    """Run event: agent code waits for a person to approve this call."""

    request: ApprovalRequest


@dataclass
class _Waiting:
    request: ApprovalRequest
    outer: Future[Any]
    tool: HostTool
    call_timeout: float
    timer: asyncio.TimerHandle | None = None


class Approvals:
    """The pending approval requests of one session (create on the event loop)."""

    def __init__(
        self,
        session_id: str,
        announce: asyncio.Queue[Any],
        *,
        timeout: float,
        call_timeout: float,
        on_decision: OnDecision | None = None,
    ) -> None:
        self.session_id = session_id
        self._announce = announce
        self._loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.call_timeout = call_timeout
        self.on_decision = on_decision
        #: The API key (digest) of the run now driving the session (``server.agent.service``).
        self.owner = ""
        self._lock = threading.Lock()
        self._waiting: dict[str, _Waiting] = {}
        self.decided: list[ApprovalRequest] = []  # newest last, at most DECIDED_KEPT
        #: Called on the event loop after each decision, whoever made it (a person, the
        #: timeout, a cancel): a plain request's suspended run goes on from there
        #: (``server.api.routes.approvals``). None: nobody waits for the decisions.
        self.on_settle: Callable[[ApprovalRequest], None] | None = None
        #: Why calls that need approval are denied at once right now (None: they ask).
        self.refusing: str | None = None

    # -- guarding tools ---------------------------------------------------------------
    def guard(self, tool: HostTool, server: str, name: str) -> HostTool:
        """`tool` asking first: its calls wait for a decision (as long as the bridge's wait
        budget allows: ``NO_LIMIT``), then the real call gets the tool's own timeout."""

        def start(arguments: dict[str, Any], timeout: float) -> Future[Any]:
            return self._start(tool, server, name, arguments, timeout)

        return HostTool(tool.function, tool.description, tool.input_schema, start, tool.origin, timeout=NO_LIMIT)

    def _start(self, tool: HostTool, server: str, name: str, arguments: dict[str, Any], budget: float) -> Future[Any]:
        """On the sandbox's thread: open the request, announce it on the loop, return at once."""
        wait = max(0.0, min(self.timeout, budget - DEADLINE_MARGIN_S))
        request = ApprovalRequest(
            new_approval_id(), self.session_id, self.owner, server, name, tool.function, arguments, wait
        )
        outer: Future[Any] = Future()
        if self.refusing is not None:
            outer.set_exception(HostCallDenied(f"{tool.function}: the call was not approved: {self.refusing}"))
            return outer
        waiting = _Waiting(request, outer, tool, self.call_timeout)
        with self._lock:
            self._waiting[request.id] = waiting
        outer.add_done_callback(lambda done: self._on_outer_done(request.id, done))
        try:
            self._loop.call_soon_threadsafe(self._open, waiting)
        except RuntimeError:  # the event loop is closed: the server is stopping
            self._settle(request.id, Decision(False, "the server is stopping", "cancelled"))
        return outer

    def _open(self, waiting: _Waiting) -> None:
        """On the loop: announce the request and start its timeout."""
        if waiting.request.id not in self._waiting:
            return  # decided (cancelled) before it was announced
        reason = f"no decision within {waiting.request.timeout:g} s"
        waiting.timer = self._loop.call_later(
            waiting.request.timeout, self._settle, waiting.request.id, Decision(False, reason, "timeout")
        )
        self._announce.put_nowait(ApprovalPending(waiting.request))

    def _on_outer_done(self, approval_id: str, done: Future[Any]) -> None:
        if done.cancelled():  # the bridge gave up, or the run was cancelled
            self._settle(approval_id, Decision(False, "the call was cancelled before a decision", "cancelled"))

    # -- deciding ---------------------------------------------------------------------
    def find(self, approval_id: str, owner: str) -> ApprovalRequest | None:
        """The pending request `approval_id` if `owner` made it; None otherwise (as if absent:
        another key learns nothing)."""
        with self._lock:
            waiting = self._waiting.get(approval_id)
        if waiting is None or not secrets.compare_digest(waiting.request.owner, owner):
            return None
        return waiting.request

    def was_decided(self, approval_id: str, owner: str) -> ApprovalRequest | None:
        """A request `owner` made that is decided already (a late answer after the timeout)."""
        for request in self.decided:
            if request.id == approval_id and secrets.compare_digest(request.owner, owner):
                return request
        return None

    @property
    def pending(self) -> list[ApprovalRequest]:
        with self._lock:
            return [w.request for w in self._waiting.values()]

    def decide(self, approval_id: str, approve: bool, reason: str | None, *, key: str) -> ApprovalRequest | None:
        """A person's decision (an API request with `key`); the request, or None when `key`
        may not decide it or it is no longer pending."""
        request = self.find(approval_id, key)
        if request is None:
            return None
        return request if self._settle(approval_id, Decision(approve, reason, "api", key)) else None

    def cancel(self) -> None:
        """Deny every pending request: the run was cancelled or the session is closing."""
        with self._lock:
            ids = list(self._waiting)
        for approval_id in ids:
            self._settle(approval_id, Decision(False, "the run was cancelled", "cancelled"))

    def _settle(self, approval_id: str, decision: Decision) -> bool:
        """Apply a decision once (from any thread); False when it was decided already."""
        with self._lock:
            waiting = self._waiting.pop(approval_id, None)
        if waiting is None:
            return False
        request = waiting.request
        request.decision = decision
        self.decided = [*self.decided[-(DECIDED_KEPT - 1) :], request]
        if waiting.timer is not None:  # a loop's timer is cancelled on its loop
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(waiting.timer.cancel)
        self._record(request, decision)
        outer = waiting.outer
        if not outer.done():
            if decision.approve:
                self._run(waiting)
            else:
                why = decision.reason or "denied"
                message = f"{request.function}: the call was not approved: {why}"
                with contextlib.suppress(InvalidStateError):
                    outer.set_exception(HostCallDenied(message))
        on_settle = self.on_settle
        if on_settle is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
                self._loop.call_soon_threadsafe(on_settle, request)
        return True

    def _run(self, waiting: _Waiting) -> None:
        """Start the approved call and pass its outcome on; cancelling the outer call stops it."""
        request, outer = waiting.request, waiting.outer
        inner = waiting.tool.start(request.arguments, waiting.call_timeout)

        def relay(done: Future[Any]) -> None:
            with contextlib.suppress(InvalidStateError):
                try:
                    outer.set_result(done.result())
                except CancelledError:
                    outer.cancel()
                except BaseException as exc:  # noqa: BLE001 - the tool's failure is the code's
                    outer.set_exception(exc)

        inner.add_done_callback(relay)
        outer.add_done_callback(lambda done: inner.cancel() if done.cancelled() else None)

    def _record(self, request: ApprovalRequest, decision: Decision) -> None:
        log.info(
            "approval %s of %s.%s in session %s: %s by %s",
            request.id,
            request.server,
            request.tool,
            request.session_id,
            "approved" if decision.approve else "denied",
            decision.by,
        )
        if self.on_decision is None:
            return
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "event": "approval_decision",
            "approval_id": request.id,
            "session_id": request.session_id,
            "server": request.server,
            "tool": request.tool,
            "arguments": request.arguments,
            "approve": decision.approve,
            "reason": decision.reason,
            "decided_by": decision.by,
            "key": decision.key or None,
            "requested_by": request.owner or None,
            "waited_s": round(time.time() - request.created, 3),
        }
        try:
            self.on_decision(record)
        except Exception:  # noqa: BLE001 - a failed log line must not stop the decision
            log.exception("could not record approval %s", request.id)


#: Decided requests a session remembers (its page shows them after a reload).
DECIDED_KEPT = 32
