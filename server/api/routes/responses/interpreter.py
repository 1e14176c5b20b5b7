"""``POST /v1/responses`` with the ``code_interpreter`` tool: the agent loop behind the
Responses shapes (what maps to what: ``interpreter_items``; what a request may ask:
``interpreter_tool``).

Not a router of its own: ``server.api.routes.responses.create`` hands such a request here, with
the conversation so far and the session (container) its previous response used, and gets
the finished response back through ``remember`` to store it.

Approvals: every run here pauses at a call that needs approval (``pause_on_approval``): the
response ends with the ``mcp_approval_request`` item, the run stays suspended on its session,
and a request whose input is ``mcp_approval_response`` items (with the previous response's id)
decides them and continues that run (``server.api.routes.approvals``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response

from models.engine.api import EngineError
from server.agent.consensus.runner import RunsDone, run_to_end
from server.agent.errors import SessionNotFound
from server.agent.runtime import AgentRuntime
from server.agent.service import PreparedRun, drive, prepare_run, resume_suspended
from server.agent.steps import AgentDone
from server.api.auth import key_of
from server.api.errors import APIError
from server.api.routes.approvals import apply_decisions, narrowing_of
from server.api.routes.responses.interpreter_items import InterpreterOutput
from server.api.routes.responses.interpreter_tool import InterpreterTool, run_request
from server.api.streams.disconnect import ClientDisconnected, unless_disconnected
from server.api.streams.sse import ResponsesEvents, sse_response
from server.openai.responses_items import ResponsesRequest, input_messages, new_id, response_object
from server.settings import Settings
from server.tools.approvals.gate import ApprovalPending
from server.tools.client_calls import ToolCallsPending

Remember = Callable[[dict[str, Any], str], None]  # (the finished response, its container id)


def _session_to_continue(runtime: AgentRuntime, tool: InterpreterTool, previous_container: str | None) -> str | None:
    """The live session this request continues: the named container, else the previous
    response's if it still lives (an expired one starts afresh), else None (a new one)."""
    if tool.container is not None:
        try:
            runtime.sessions.get(tool.container)
        except SessionNotFound as exc:
            raise APIError(
                404,
                f"no container '{tool.container}' (it expired, was deleted, or never existed)",
                code="not_found",
                param=f"tools[{tool.at}].container",
            ) from exc
        return tool.container
    if previous_container is not None:
        with contextlib.suppress(SessionNotFound):
            runtime.sessions.get(previous_container)
            return previous_container
    return None


@dataclass
class Interpretation:
    """A prepared code-interpreter run: the agent run, its output items, its snapshots."""

    run: PreparedRun
    output: InterpreterOutput
    snapshot: Callable[[AgentDone | ApprovalPending | None], dict[str, Any]]

    def events(self, runtime: AgentRuntime, remember: Remember) -> AsyncIterator[bytes]:
        """The run as a stream of Responses events; only its reader drives it (streaming,
        or a background run's own task)."""
        return _events(runtime, self.run, self.output, self.snapshot, remember)


async def prepare_interpretation(
    body: ResponsesRequest,
    tool: InterpreterTool,
    runtime: AgentRuntime,
    settings: Settings,
    request: Request,
    history: list[dict[str, Any]],
    previous_container: str | None,
) -> Interpretation:
    """The session (a 409 or 429 for it happens here, before any event) and the run's shapes."""
    session_id = _session_to_continue(runtime, tool, previous_container)
    new = input_messages(body.input)
    if session_id is None:  # a fresh interpreter: the model reads the conversation so far
        instructions = [{"role": "system", "content": body.instructions}] if body.instructions else []
        messages = [*instructions, *history, *new]
    else:  # the session holds the conversation already
        messages = new
    response_id = new_id("resp")
    owner = key_of(request)
    decided = apply_decisions(body.input, runtime, session_id, owner)
    asked = replace(run_request(body, messages, session_id, settings), run_id=response_id, owner=owner)
    if decided is not None:  # the run this container waits in goes on
        run = await resume_suspended(runtime, decided, asked)
    else:
        narrowing = narrowing_of(tool.mcp, runtime)
        if narrowing is not None:
            asked = replace(asked, mcp_servers=list(narrowing), mcp_narrowing=narrowing)
        run = await prepare_run(runtime, asked)
    run.pause_on_approval = True
    base = str(request.base_url).rstrip("/")
    container = run.session.id

    def file_url(path: str) -> str:
        return f"{base}/v1/agent/sessions/{container}/files/{quote(path)}"

    output = InterpreterOutput(container, file_url)
    created = int(time.time())

    def snapshot(done: AgentDone | ApprovalPending | None) -> dict[str, Any]:
        usage = done.usage.payload() if isinstance(done, AgentDone) else None
        items = output.output if done is not None else []
        return response_object(
            response_id,
            body,
            status=output.status,
            output=items,
            usage=usage,
            incomplete=output.incomplete,
            created_at=created,
        )

    return Interpretation(run, output, snapshot)


async def interpret(
    it: Interpretation, body: ResponsesRequest, runtime: AgentRuntime, request: Request, remember: Remember
) -> Response | dict[str, Any]:
    """Run the request through the agent loop: one response, or its stream of events."""
    if body.stream:
        return sse_response(it.events(runtime, remember))
    try:
        ended = await unless_disconnected(request, run_to_end(runtime, [it.run], it.output.feed))
    except ClientDisconnected:
        return Response(status_code=499)  # the client left; nobody reads this
    done = ended.done if isinstance(ended, RunsDone) else ended
    assert not isinstance(done, ToolCallsPending), "a code-interpreter run has no client tools to wait for"
    answer = it.snapshot(done)
    remember(answer, it.run.session.id)
    return answer


async def _events(
    runtime: AgentRuntime,
    run: PreparedRun,
    output: InterpreterOutput,
    snapshot: Callable[[AgentDone | ApprovalPending | None], dict[str, Any]],
    remember: Remember,
) -> AsyncIterator[bytes]:
    event = ResponsesEvents()
    yield event.opening(snapshot(None))
    try:
        events = drive(runtime, run)
        try:
            async for agent_event in events:
                yield b"".join(event(kind, fields) for kind, fields in output.feed(agent_event))
                if isinstance(agent_event, AgentDone | ApprovalPending):
                    answer = snapshot(agent_event)
                    remember(answer, run.session.id)
                    yield event(f"response.{answer['status']}", {"response": answer})
        finally:  # the client left: stop the generation and any running execution now
            await events.aclose()  # type: ignore[attr-defined]  # drive is an async generator
    except EngineError as exc:
        yield event.error(exc)
