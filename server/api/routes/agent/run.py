"""``POST /v1/agent`` (and ``/v1/agent/chat/completions``): one request, answered by its runs.

Why one path for any k: a plain request is one run of the path that also runs k sampled runs
(``server.agent.consensus.runner``: ``samples: 1``, no vote), so preparing, streaming,
detaching and finishing are written once and a fix to one applies to both. What only one run
can do (continue a session, stop at the client's tool call or at an approval) is what a
single run's events bring; the answer is rendered by ``server.api.routes.agent.chunks``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response

from server.agent.consensus.runner import prepare_runs, run_to_end
from server.agent.runtime import AgentRuntime
from server.agent.service import PreparedRun
from server.api.agent_schemas import AgentRequest
from server.api.auth import key_of
from server.api.deps import BackgroundDep, RuntimeDep, SettingsDep
from server.api.errors import InvalidRequest
from server.api.json_body import EncodableJSONResponse
from server.api.openapi_errors import EVENT_STREAM
from server.api.routes.agent.chunks import run_chunks
from server.api.routes.agent.shapes import OPENAI_FINISH_OF_AGENT, step_payload
from server.api.routes.approvals import approval_completion, refuse_in_samples
from server.api.routes.chat import check_model
from server.api.streams.background import BackgroundRuns
from server.api.streams.disconnect import ClientDisconnected, unless_disconnected
from server.api.streams.event_formats import AgentFormat, numbered
from server.api.streams.sse import openai_stream, sse_response
from server.api.tool_call_replies import tool_calls_completion
from server.openai.schemas import FunctionTool, chat_completion, new_completion_id, wants_usage
from server.tools.approvals.gate import ApprovalPending
from server.tools.client_calls import ToolCallsPending

router = APIRouter(prefix="/v1/agent")


@router.post("", response_model=None, responses=EVENT_STREAM)
@router.post("/chat/completions", response_model=None, responses=EVENT_STREAM)
async def agent_completion(
    body: AgentRequest, runtime: RuntimeDep, settings: SettingsDep, background: BackgroundDep, request: Request
) -> Response:
    check_model(runtime.engine, body.model)
    owner = key_of(request)
    if body.background:
        _check_background(body, background, owner)
    if body.session_id is not None:
        runtime.sessions.get(body.session_id)  # an unknown session is a 404 before anything is refused
    samples = body.sample_count(settings)
    completion_id = new_completion_id()
    runs = await prepare_runs(runtime, replace(body.run_request(settings), run_id=completion_id, owner=owner), samples)
    if samples > 1:
        refuse_in_samples(runs)
    return await answer(runtime, runs, completion_id, body, background, request)


async def answer(
    runtime: AgentRuntime,
    runs: list[PreparedRun],
    completion_id: str,
    body: AgentRequest,
    background: BackgroundRuns,
    request: Request,
    extra: dict[str, Any] | None = None,
) -> Response:
    """Answer prepared runs as ``body`` asks: streamed, detached (202: the chunks run on,
    numbered for resuming; known by sample 0's session, the first the stream names), or one
    JSON answer (whose ``agent`` field gets ``extra``)."""
    if body.background or body.stream:
        chunks = openai_stream(run_chunks(runtime, runs, completion_id, body.model, wants_usage(body.stream_options)))
        if not body.background:
            return sse_response(chunks)
        detached = await background.start(numbered(chunks), lambda *_: None, AgentFormat(), runs[0].owner)
        events_url = f"/v1/agent/sessions/{quote(detached.id)}/events"
        return EncodableJSONResponse({**detached.response, "events_url": events_url}, status_code=202)
    if len(runs) == 1:
        runs[0].pause_on_approval = True  # answer now; the decision resumes it (routes.approvals)
    try:
        ended = await unless_disconnected(request, run_to_end(runtime, runs))
    except ClientDisconnected:
        return Response(status_code=499)
    if isinstance(ended, ApprovalPending):

        def rest(resumed: PreparedRun) -> AsyncGenerator[bytes, None]:
            return run_chunks(runtime, [resumed], resumed.record_id, body.model, False)

        return EncodableJSONResponse(approval_completion(runtime, runs[0], ended, body.model, background, rest))
    if isinstance(ended, ToolCallsPending):
        return EncodableJSONResponse(tool_calls_completion(completion_id, body.model, runs[0], ended))
    agent = {**ended.outcome(), "steps": [step_payload(s) for s in ended.steps_of(ended.winner)], **(extra or {})}
    for sample in agent.get("samples", ()):
        sample["steps"] = [step_payload(s) for s in ended.steps_of(sample["index"])]
    done = ended.done
    # Already plain JSON types: encode directly, not through FastAPI's recursive
    # jsonable_encoder (1-3 ms for a ten-step answer on the 2-core test machine).
    return EncodableJSONResponse(
        chat_completion(
            completion_id,
            body.model,
            done.message,
            OPENAI_FINISH_OF_AGENT[done.finish_reason],
            done.usage.payload(),
            agent=agent,
        )
    )


def _check_background(body: AgentRequest, background: BackgroundRuns, owner: str) -> None:
    """What a background run cannot be: one whose tools call back to a client (nobody is there
    to answer), or one beyond the limit of runs at once (429)."""
    if any(isinstance(tool, FunctionTool) for tool in body.tools or []):
        raise InvalidRequest(
            "a background run cannot call the client's function tools (no client is connected to "
            "answer them); give Python tools with source, or run in the foreground",
            param="tools",
        )
    background.check_capacity(owner)
