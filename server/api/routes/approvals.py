"""Approvals over HTTP: deciding a pending tool call, on ``/v1/agent`` and on ``/v1/responses``.

``POST /v1/agent/sessions/{id}/approvals/{approval_id}`` with ``{"approve": bool, "reason":
...}`` decides one request (``server.tools.approvals.gate``); ``GET /v1/agent/sessions/{id}/approvals``
lists the pending ones (a reloaded page shows them again). Only the API key of the run that
asked may see or decide a request: any other key, a wrong session or an id decided already is
the same 404, so a guess learns nothing.

A streamed or background ``/v1/agent`` run goes on by itself once its call is decided (its
stream, or the session's event stream, shows the rest). A plain request ended at the approval
(``finish_reason: "approval_required"``), its run suspended: the decision (a person's, or the
timeout's denial) starts the rest of that run as a background run, whose events the session's
event stream serves, as for any background run.

On ``/v1/responses`` the decision is an ``mcp_approval_response`` input item, and the request
that carries it continues the suspended run (`apply_decisions`); the ``mcp`` tools of a request
narrow which servers and tools a new container gets, and what asks (`narrowing_of`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from server.agent.runtime import AgentRuntime
from server.agent.service import PreparedRun, RunRequest, resume_suspended
from server.agent.sessions import Session
from server.api.auth import key_of
from server.api.deps import BackgroundDep, RuntimeDep
from server.api.errors import NotFound
from server.api.json_body import EncodableJSONResponse
from server.api.streams.background import BackgroundRuns
from server.api.streams.event_formats import AgentFormat, numbered
from server.api.streams.sse import openai_stream
from server.openai.errors import RequestRefused
from server.openai.schemas import chat_completion, usage_dict
from server.tools.approvals.gate import ApprovalPending, ApprovalRequest, Approvals
from server.tools.approvals.rules import Narrowing, RuleError, parse_mcp_tools

router = APIRouter(prefix="/v1/agent")
log = logging.getLogger(__name__)

#: The rest of a resumed run as the agent route streams it (``routes.agent.run`` gives it, so
#: this module needs nothing from that one, which imports it).
ChunksOf = Callable[[PreparedRun], AsyncGenerator[bytes, None]]


class Decision(BaseModel):
    """The body of a decision."""

    model_config = ConfigDict(extra="forbid")

    approve: bool
    reason: str | None = Field(None, max_length=2000, description="why; the code's PermissionError says it")


@dataclass
class Paused:
    """A plain request's run, suspended at an approval: the decision resumes it in the
    background (once: the first decision of the session's pending requests does)."""

    runtime: AgentRuntime
    run: PreparedRun
    chunks_of: ChunksOf
    background: BackgroundRuns
    resumed: bool = False

    def __call__(self, decided: ApprovalRequest) -> None:
        if self.resumed:
            return
        self.resumed = True
        task = asyncio.get_running_loop().create_task(self._resume(), name="approval-resume")
        _RESUMING.add(task)
        task.add_done_callback(_RESUMING.discard)

    async def _resume(self) -> None:
        session = self.run.session
        try:
            run = await resume_suspended(self.runtime, session, RunRequest([], self.run.options, owner=self.run.owner))
            chunks = openai_stream(self.chunks_of(run))
            await self.background.start(numbered(chunks), lambda *_: None, AgentFormat(), self.run.owner)
        except Exception:  # noqa: BLE001 - nobody awaits this: the session keeps its suspended run
            log.exception("session %s: the run could not go on after its approval", session.id)
        finally:
            if session.approvals is not None and session.approvals.on_settle is self:
                session.approvals.on_settle = None


#: Resumptions under way (a task nobody holds may be collected before it ran).
_RESUMING: set[asyncio.Task[None]] = set()


def _approvals(runtime: AgentRuntime, session_id: str) -> tuple[Session, Approvals | None]:
    session = runtime.sessions.get(session_id)
    return session, session.approvals


def _not_found(session_id: str, approval_id: str) -> NotFound:
    return NotFound(
        f"no pending approval request '{approval_id}' in session '{session_id}' (it was decided "
        "already, timed out, or belongs to another API key)"
    )


@router.get("/sessions/{session_id}/approvals")
async def list_approvals(session_id: str, runtime: RuntimeDep, request: Request) -> dict[str, Any]:
    """The session's requests waiting for a decision that this API key may make."""
    _, approvals = _approvals(runtime, session_id)
    owner = key_of(request)
    pending = [] if approvals is None else [r for r in approvals.pending if approvals.find(r.id, owner) is not None]
    return {"object": "list", "data": [r.to_json() for r in pending]}


@router.post("/sessions/{session_id}/approvals/{approval_id}")
async def decide(
    session_id: str,
    approval_id: str,
    decision: Decision,
    runtime: RuntimeDep,
    background: BackgroundDep,
    request: Request,
) -> EncodableJSONResponse:
    """Approve or deny one pending call; a plain request's suspended run then goes on in the
    background (202)."""
    session, approvals = _approvals(runtime, session_id)
    owner = key_of(request)
    if approvals is None or approvals.find(approval_id, owner) is None:
        raise _not_found(session_id, approval_id)
    if isinstance(approvals.on_settle, Paused):
        background.check_capacity(owner)  # before deciding: a 429 leaves the request pending
    decided = approvals.decide(approval_id, decision.approve, decision.reason, key=owner)
    if decided is None:
        raise _not_found(session_id, approval_id)
    events_url = f"/v1/agent/sessions/{quote(session.id)}/events"
    answer = {
        "id": decided.id,
        "object": "agent.approval",
        "session_id": session.id,
        "approve": decision.approve,
        "reason": decision.reason,
        "status": "approved" if decision.approve else "denied",
        "events_url": events_url,
    }
    return EncodableJSONResponse(answer)


# --- /v1/agent: the event and the plain answer -------------------------------------------


#: Why a sampled run's calls that need approval are denied: k runs would ask k times, and
#: approving them all would do the same thing k times.
SAMPLED = "calls that need approval are not made in sampled runs (samples above 1)"


def refuse_in_samples(runs: Sequence[PreparedRun]) -> None:
    """Deny at once the calls of sampled runs that would ask (the code sees PermissionError)."""
    for run in runs:
        run.refuse_approvals = SAMPLED


def approval_event(pending: ApprovalPending) -> dict[str, Any]:
    """The ``agent`` field of the stream's ``approval_request`` chunk."""
    return {"type": "approval_request", **pending.request.to_json()}


def approval_text(request: ApprovalRequest) -> str:
    """The transcript's line for a pending request."""
    return f"\n\n**Approval needed:** `{request.server}.{request.tool}` with `{request.arguments}`\n\n"


def approval_completion(
    runtime: AgentRuntime,
    run: PreparedRun,
    pending: ApprovalPending,
    model: str,
    background: BackgroundRuns,
    chunks_of: ChunksOf,
) -> dict[str, Any]:
    """A plain request's answer when its run waits for approval (the run is suspended; the
    decision resumes it in the background)."""
    approvals = run.session.approvals
    assert approvals is not None, "an approval request came from a session without approvals"
    approvals.on_settle = Paused(runtime, run, chunks_of, background)
    if pending.request.decision is not None:  # decided (cancelled) before this answer
        approvals.on_settle(pending.request)
    request = pending.request
    session_id = run.session.id
    return chat_completion(
        run.record_id,
        model,
        approval_text(request).strip(),
        "approval_required",
        usage_dict(0, 0),
        agent={
            "session_id": session_id,
            "finish_reason": "approval_required",
            "approval": request.to_json(),
            "approval_url": f"/v1/agent/sessions/{quote(session_id)}/approvals/{quote(request.id)}",
            "events_url": f"/v1/agent/sessions/{quote(session_id)}/events",
            "steps": [],
        },
    )


# --- /v1/responses ------------------------------------------------------------------------


def narrowing_of(tools: Sequence[tuple[int, Mapping[str, Any]]], runtime: AgentRuntime) -> dict[str, Narrowing] | None:
    """A request's ``mcp`` tools as what they narrow (None: it has none)."""
    if not tools:
        return None
    if runtime.mcp is None:
        raise RequestRefused(
            "mcp tools name servers of this server's --mcp-config, and it has none", param=f"tools[{tools[0][0]}]"
        )
    try:
        return parse_mcp_tools(tools, runtime.mcp.names)
    except RuleError as exc:
        raise RequestRefused(str(exc), param=exc.where) from exc


def apply_decisions(items: Any, runtime: AgentRuntime, session_id: str | None, owner: str) -> Session | None:
    """Decide the ``mcp_approval_response`` items of a request's input; the session whose run
    goes on, or None when the input holds none."""
    if not isinstance(items, list):
        return None
    answers = [(i, item) for i, item in enumerate(items) if item.get("type") == "mcp_approval_response"]
    if not answers:
        return None
    if len(answers) != len(items):
        raise RequestRefused(
            "an input with mcp_approval_response items may hold nothing else: the run they decide goes on",
            param="input",
        )
    if session_id is None:
        raise RequestRefused(
            "an mcp_approval_response answers a request of an earlier response: send its previous_response_id",
            param="previous_response_id",
        )
    session = runtime.sessions.get(session_id)
    approvals = session.approvals
    for i, item in answers:
        approval_id, approve = item.get("approval_request_id"), item.get("approve")
        if not isinstance(approve, bool):
            raise RequestRefused("'approve' must be true or false", param=f"input[{i}].approve")
        reason = item.get("reason")
        decided = None
        if isinstance(approval_id, str) and approvals is not None:
            decided = approvals.decide(approval_id, approve, reason if isinstance(reason, str) else None, key=owner)
            # Too late (the timeout denied it): the run still goes on, with that denial.
            decided = decided or approvals.was_decided(approval_id, owner)
        if decided is None:
            raise RequestRefused(
                f"no pending approval request {approval_id!r} in this container (decided already, timed out, "
                "or another API key's)",
                param=f"input[{i}].approval_request_id",
            )
    return session
