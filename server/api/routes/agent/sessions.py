"""A session over HTTP: ``GET``/``DELETE /v1/agent/sessions/{id}``, its workspace files, and
its background run (``/events`` to follow it, ``/cancel`` to stop it).

Why here and not with the run: a session outlives the request that made it (the next request
continues it, a background run goes on without it), so what reads or ends one is its own
endpoint family; it starts no run.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from sandbox import workspace
from server.api.auth import key_of
from server.api.deps import BackgroundDep, RuntimeDep
from server.api.errors import InvalidRequest, NotFound
from server.api.openapi_errors import EVENT_STREAM
from server.api.routes.agent.shapes import step_payload
from server.api.streams.background import BackgroundRuns
from server.api.streams.background_run import KnownRun
from server.api.streams.sse import DONE, sse_response

FILE_CHUNK = 1 << 16
MAX_LISTED_FILES = 1000

router = APIRouter(prefix="/v1/agent")


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
