"""``/v1/agent``: the whole CodeAct loop behind the chat-completions protocol, and sessions.

``POST /v1/agent`` and ``POST /v1/agent/chat/completions`` (the path an OpenAI SDK builds
from ``base_url=".../v1/agent"``) take a chat-completions body plus agent extras. Non-stream
answers one ``chat.completion`` whose message is the final answer, with an ``agent`` field
holding the steps. Stream sends ``chat.completion.chunk`` events whose ``delta.content`` is
a readable Markdown transcript and whose ``agent`` field carries the structured event:

    {"type": "session", "session_id": ...}                          first chunk
    {"type": "delta", "step": i, "channel": "thought"|"code"|"answer", "text": ...}
    {"type": "step", "step": {...step shape...}}                    a turn finished
    {"type": "done", "session_id", "finish_reason", "turns", "final_message",
     "forced_answer", "usage", "error"}                           last chunk

The ``agent`` field of a non-stream answer holds those same run fields (the run's
``outcome``: one shape for both, and for the audit log) plus ``steps``.

With ``samples: k`` (k > 1; ``server.agent.consensus``) k runs answer the request. The
``agent`` field describes the winning run (its session continues the conversation; the
others are closed), its ``usage`` and the response's sum every run's, and it adds
``samples`` (every run: ``index``, ``answer``, the outcome fields, ``steps``) and
``agreement`` (``answer``, ``votes``, ``voters``, ``of``, ``sample``: the winning run). Streamed,
each run's events carry ``"sample": i`` (one ``session`` chunk per run; ``delta.content`` is
sample 0's transcript only), a run's end is ``{"type": "sample_done", "sample": i, "answer",
...outcome}``, and the last chunk is ``done`` with the winner's outcome, ``samples`` (without
steps: they streamed) and ``agreement``.

When agent code calls one of the client's function tools, the answer is instead a standard
assistant message with ``tool_calls`` (finish_reason ``tool_calls``; streamed as tool-call
deltas, the last chunk's ``agent`` is ``{"type": "tool_calls", "session_id"}``); the client's
next request with the ``tool`` messages resumes the run (``server.tools.client_calls``).
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from sandbox import workspace
from server.agent.consensus.runner import (
    SampleEvent,
    SamplesDone,
    collect_samples,
    drive_samples,
    prepare_samples,
    sample_outcome,
)
from server.agent.runtime import AgentRuntime
from server.agent.service import PreparedRun, drive, prepare_run
from server.agent.steps import AgentDone, AgentEvent, StepDone, TurnDelta
from server.agent.transcript import Transcript
from server.api.agent_schemas import OPENAI_FINISH_OF_AGENT, AgentRequest, step_payload
from server.api.auth import key_of
from server.api.deps import SettingsDep
from server.api.errors import InvalidRequest, NotFound
from server.api.json_body import EncodableJSONResponse
from server.api.openapi_errors import EVENT_STREAM
from server.api.routes.approvals import approval_completion, approval_event, approval_text, refuse_in_samples
from server.api.routes.chat import check_model
from server.api.streams.background import AgentFormat, BackgroundRuns, KnownRun, numbered
from server.api.streams.disconnect import ClientDisconnected, unless_disconnected
from server.api.streams.sse import DONE, openai_stream, ready_batches, sse_event, sse_response
from server.api.tool_call_replies import tool_call_chunks, tool_calls_completion
from server.openai.schemas import (
    FunctionTool,
    chat_chunk,
    chat_completion,
    new_completion_id,
    wants_usage,
)
from server.settings import Settings
from server.tools.approvals.gate import ApprovalPending
from server.tools.client_calls import ToolCallsPending

FILE_CHUNK = 1 << 16
router = APIRouter(prefix="/v1/agent")

MAX_LISTED_FILES = 1000


def get_runtime(request: Request) -> AgentRuntime:
    return request.app.state.agent


RuntimeDep = Annotated[AgentRuntime, Depends(get_runtime)]


def get_background(request: Request) -> BackgroundRuns:
    return request.app.state.background


BackgroundDep = Annotated[BackgroundRuns, Depends(get_background)]


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
    if samples > 1:
        return await _sampled_completion(runtime, body, settings, request, samples, background)
    completion_id = new_completion_id()
    run = await prepare_run(runtime, replace(body.run_request(settings), run_id=completion_id, owner=owner))
    return await answer_run(runtime, run, body, background, request)


async def answer_run(
    runtime: AgentRuntime,
    run: PreparedRun,
    body: AgentRequest,
    background: BackgroundDep,
    request: Request,
    extra: dict[str, Any] | None = None,
) -> Response:
    """Answer a prepared run as ``body`` asks: streamed, detached, or one JSON answer (whose
    ``agent`` field gets ``extra``); its id is the run's record id."""
    completion_id = run.record_id
    answer = await _stream_or_detach(
        body, background, run.owner, lambda usage: _stream(runtime, run, completion_id, body.model, usage)
    )
    if answer is not None:
        return answer
    run.pause_on_approval = True  # answer now; the decision resumes it (routes.approvals)
    try:
        done = await unless_disconnected(request, _collect(runtime, run))
    except ClientDisconnected:
        return Response(status_code=499)
    if isinstance(done, ApprovalPending):

        def rest(resumed: PreparedRun) -> AsyncGenerator[bytes, None]:
            return _stream(runtime, resumed, resumed.record_id, body.model, False)

        return EncodableJSONResponse(approval_completion(runtime, run, done, body.model, background, rest))
    if isinstance(done, ToolCallsPending):
        return EncodableJSONResponse(tool_calls_completion(completion_id, body.model, run, done))
    # Already plain JSON types: encode directly, not through FastAPI's recursive
    # jsonable_encoder (1-3 ms for a ten-step answer on the 2-core test machine).
    return EncodableJSONResponse(
        chat_completion(
            completion_id,
            body.model,
            done.message,
            OPENAI_FINISH_OF_AGENT[done.finish_reason],
            done.usage.payload(),
            agent={**run.outcome(done), "steps": [step_payload(s) for s in run.steps_of(done)], **(extra or {})},
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


async def _collect(runtime: AgentRuntime, run: PreparedRun) -> AgentDone | ToolCallsPending | ApprovalPending:
    done: AgentDone | ToolCallsPending | ApprovalPending | None = None
    async for event in drive(runtime, run):
        if isinstance(event, AgentDone | ToolCallsPending | ApprovalPending):
            done = event
    assert done is not None, "the agent loop ended without a final event"
    return done


class _Chunks:
    """One streamed answer's chunks (its id, model and creation time), the agent event in each."""

    def __init__(self, completion_id: str, model: str) -> None:
        self.id, self.model, self.created = completion_id, model, int(time.time())

    def chunk(self, content: str | None, agent: dict[str, Any], finish: str | None = None) -> bytes:
        delta = {} if content is None else {"content": content}
        return sse_event(chat_chunk(self.id, self.model, self.created, delta, finish, agent=agent))

    def session(self, session_id: str, *, first: bool = True, **tag: int) -> bytes:
        """A chunk naming a session; the first chunk of the answer also gives the role."""
        agent = {"type": "session", "session_id": session_id, **tag}
        if not first:
            return self.chunk(None, agent)
        delta = {"role": "assistant", "content": ""}
        return sse_event(chat_chunk(self.id, self.model, self.created, delta, agent=agent))

    def turn(self, event: TurnDelta | StepDone, content: str | None, **tag: int) -> bytes:
        """A text delta or a finished step (``tag``: which sample's)."""
        if isinstance(event, TurnDelta):
            agent = {"type": "delta", **tag, "step": event.step_index, "channel": event.channel, "text": event.text}
            return self.chunk(content, agent)
        return self.chunk(content, {"type": "step", **tag, "step": step_payload(event.step)})

    def end(self, done: AgentDone, text: str, outcome: dict[str, Any], include_usage: bool) -> list[bytes]:
        """The last chunks: the transcript's end, ``done`` with ``outcome``, the usage if asked."""
        out = [self.chunk(text, {"type": "transcript"})] if text else []
        out.append(self.chunk(None, {"type": "done", **outcome}, OPENAI_FINISH_OF_AGENT[done.finish_reason]))
        if include_usage:
            usage = done.usage.payload()
            out.append(sse_event(chat_chunk(self.id, self.model, self.created, None, usage=usage)))  # type: ignore[arg-type]
        return out


async def _stream(
    runtime: AgentRuntime, run: PreparedRun, completion_id: str, model: str, include_usage: bool
) -> AsyncGenerator[bytes, None]:
    """The agent's SSE chunks: one write per batch of events that were ready together
    (``openai_stream`` adds the error event and ``[DONE]``)."""
    chunks = _Chunks(completion_id, model)
    session_id = run.session.id
    transcript = Transcript()

    def render(event: AgentEvent | ToolCallsPending | ApprovalPending) -> list[bytes]:
        if isinstance(event, ApprovalPending):
            return [chunks.chunk(approval_text(event.request), {**approval_event(event), "session_id": session_id})]
        if isinstance(event, ToolCallsPending):
            return tool_call_chunks(completion_id, model, chunks.created, session_id, event)
        text = transcript.render(event)
        if isinstance(event, TurnDelta | StepDone):
            return [chunks.turn(event, text)]
        return chunks.end(event, text, run.outcome(event), include_usage)

    yield chunks.session(session_id)
    async with contextlib.aclosing(ready_batches(drive(runtime, run))) as batches:
        async for batch in batches:
            yield b"".join(piece for event in merge_deltas(batch) for piece in render(event))


async def _stream_or_detach(
    body: AgentRequest,
    background: BackgroundRuns,
    owner: str,
    chunks_of: Callable[[bool], AsyncGenerator[bytes, None]],
) -> Response | None:
    """The answer of a background request (202: its chunks run on, numbered for resuming) or
    of a streamed one (SSE), made from the run's chunks (``chunks_of(include_usage)``); None
    for a plain request, which the caller collects. One run or ``samples`` alike."""
    if not (body.background or body.stream):
        return None
    chunks = openai_stream(chunks_of(wants_usage(body.stream_options)))
    if not body.background:
        return sse_response(chunks)
    detached = await background.start(numbered(chunks), lambda *_: None, AgentFormat(), owner)
    events_url = f"/v1/agent/sessions/{quote(detached.id)}/events"
    return EncodableJSONResponse({**detached.response, "events_url": events_url}, status_code=202)


async def _sampled_completion(
    runtime: AgentRuntime,
    body: AgentRequest,
    settings: Settings,
    request: Request,
    samples: int,
    background: BackgroundRuns,
) -> Response:
    """``samples`` runs of the request at once, answered by the one most of them agree on.
    A background one is known by sample 0's session, the first its stream names."""
    completion_id = new_completion_id()
    owner = key_of(request)
    runs = await prepare_samples(
        runtime, replace(body.run_request(settings), run_id=completion_id, owner=owner), samples
    )
    refuse_in_samples(runs)
    answer = await _stream_or_detach(
        body, background, owner, lambda usage: _stream_samples(runtime, runs, completion_id, body.model, usage)
    )
    if answer is not None:
        return answer
    try:
        result = await unless_disconnected(request, collect_samples(runtime, runs))
    except ClientDisconnected:
        return Response(status_code=499)
    done = result.done
    agent = {**result.outcome(), "steps": [step_payload(s) for s in result.steps_of(result.winner)]}
    for sample in agent["samples"]:
        sample["steps"] = [step_payload(s) for s in result.steps_of(sample["index"])]
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


async def _stream_samples(
    runtime: AgentRuntime, runs: list[PreparedRun], completion_id: str, model: str, include_usage: bool
) -> AsyncGenerator[bytes, None]:
    """Every run's events as they come, each tagged with its sample; ``delta.content`` is
    sample 0's transcript (k interleaved transcripts would read as none), then the agreement."""
    chunks = _Chunks(completion_id, model)
    transcript = Transcript()

    def render(item: SampleEvent | SamplesDone) -> list[bytes]:
        if isinstance(item, SamplesDone):
            agreement = f"\n\n_[{item.agreement.describe()}]_\n"
            return chunks.end(item.done, agreement, item.outcome(), include_usage)
        event, index = item.event, item.sample
        text = transcript.render(event) if index == 0 else None
        if isinstance(event, TurnDelta | StepDone):
            return [chunks.turn(event, text, sample=index)]
        assert isinstance(event, AgentDone)
        out = [chunks.chunk(text, {"type": "transcript", "sample": index})] if text else []
        outcome = sample_outcome(runs[index], index, event)
        out.append(chunks.chunk(None, {"type": "sample_done", "sample": index, **outcome}))
        return out

    yield b"".join(chunks.session(run.session.id, first=i == 0, sample=i) for i, run in enumerate(runs))
    async with contextlib.aclosing(ready_batches(drive_samples(runtime, runs))) as batches:
        async for batch in batches:
            yield b"".join(piece for item in _merge_sample_deltas(batch) for piece in render(item))


def _merge_sample_deltas(items: list[SampleEvent | SamplesDone]) -> list[SampleEvent | SamplesDone]:
    """``merge_deltas`` within each sample's consecutive events."""
    merged: list[SampleEvent | SamplesDone] = []
    for item in items:
        last = merged[-1] if merged else None
        if isinstance(item, SampleEvent) and isinstance(last, SampleEvent) and last.sample == item.sample:
            joined = merge_deltas([last.event, item.event])
            if len(joined) == 1:
                merged[-1] = SampleEvent(item.sample, joined[0])
                continue
        merged.append(item)
    return merged


def merge_deltas(events: list[AgentEvent]) -> list[AgentEvent]:
    """Join consecutive text deltas of one step and channel (a burst of tokens: one event).

    The transcript renders a joined delta exactly as the pieces one after another, and a
    client that appends ``text`` sees the same text; only the number of events changes.
    """
    merged: list[AgentEvent] = []
    for event in events:
        last = merged[-1] if merged else None
        if (
            isinstance(event, TurnDelta)
            and isinstance(last, TurnDelta)
            and (last.step_index, last.channel) == (event.step_index, event.channel)
        ):
            merged[-1] = TurnDelta(last.step_index, last.channel, last.text + event.text)
        else:
            merged.append(event)
    return merged


@router.get("/sessions/{session_id}/events", response_model=None, responses=EVENT_STREAM)
async def session_events(
    session_id: str,
    background: BackgroundDep,
    request: Request,
    after: Annotated[int | None, Query(ge=-1, description="resume after this event id")] = None,
    last_event_id: Annotated[str | None, Header(description="an event id this client saw last")] = None,
) -> Response:
    """The session's background run as server-sent events: those after ``Last-Event-ID`` (or
    ``?after=N``; all, with neither), then the live ones, then ``data: [DONE]``. Leaving does
    not stop the run."""
    run = await _background_run(background, session_id, key_of(request))
    starting_after = _event_id(last_event_id) if last_event_id is not None else after
    run.check_resumable(starting_after)
    if starting_after is not None:
        background.count_resumption()
    return sse_response(_then_done(run.follow(starting_after)))


def _event_id(header: str) -> int:
    """``Last-Event-ID`` as the number our events carry; anything else is a 400 naming it."""
    try:
        value = int(header)
    except ValueError:
        value = -2
    if value < -1:
        raise InvalidRequest(f"Last-Event-ID must be an id this stream sent, not {header!r}", param="Last-Event-ID")
    return value


async def _then_done(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in events:
        yield chunk
    yield DONE


@router.post("/sessions/{session_id}/cancel")
async def cancel_session_run(session_id: str, background: BackgroundDep, request: Request) -> dict[str, Any]:
    """Stop the session's background run (generation and any running execution); the session
    and its files stay. A finished run is answered as it is."""
    run = await _background_run(background, session_id, key_of(request))
    await run.cancel()
    return run.response


async def _background_run(background: BackgroundRuns, session_id: str, owner: str) -> KnownRun:
    """The session's background run, live or from the store (an earlier process's included)."""
    run = await background.find(session_id, owner)
    if run is None:
        raise NotFound(f"session '{session_id}' has no background run (start one with background: true)")
    return run


@router.get("/sessions/{session_id}")
async def get_session(session_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    session = runtime.sessions.get(session_id)
    return {
        **session.summary(),
        "object": "agent.session",
        "messages": session.messages,
        "steps": [step_payload(s) for s in session.steps],
        "files": _list_files(session.workspace),
    }


@router.delete("/sessions/{session_id}")
async def delete_session(session_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    await runtime.sessions.delete_off_loop(session_id)
    return {"id": session_id, "object": "agent.session.deleted", "deleted": True}


@router.get("/sessions/{session_id}/files/{file_path:path}")
async def get_session_file(session_id: str, file_path: str, runtime: RuntimeDep) -> StreamingResponse:
    """A workspace file, opened without following links (code may still be running and could
    swap a checked file for a link to a secret between a check and an open)."""
    session = runtime.sessions.get(session_id)
    try:
        fd, info = workspace.open_file(Path(session.workspace), file_path)
    except workspace.UnsafePath as exc:
        raise InvalidRequest(
            f"file path is not a plain path inside the session workspace: {exc}", param="file_path"
        ) from exc
    except FileNotFoundError as exc:
        raise NotFound(f"no file '{file_path}' in session {session_id}") from exc
    handle = os.fdopen(fd, "rb")

    def chunks() -> Iterator[bytes]:
        with handle:
            while block := handle.read(FILE_CHUNK):
                yield block

    name = PurePosixPath(file_path).name
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {
        "Content-Length": str(info.st_size),
        "Content-Disposition": f"attachment; filename*=utf-8''{quote(name)}",
    }
    return StreamingResponse(chunks(), media_type=media_type, headers=headers)


def _list_files(workspace: Path) -> list[dict[str, Any]]:
    root = Path(workspace)
    files: list[dict[str, Any]] = []
    for path in sorted(root.rglob("*")):
        if len(files) >= MAX_LISTED_FILES:
            break
        if path.is_file() and not path.is_symlink():
            files.append({"path": str(path.relative_to(root)), "bytes": path.stat().st_size})
    return files
