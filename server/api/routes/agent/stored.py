"""``GET /v1/agent/runs/{id}`` and ``POST /v1/agent/runs/{id}/replay``: a stored run read back.

The run's record comes from the store (``server.store``), so these answer for runs of any
process that used the same store, a restart ago or a month ago (within retention). ``id`` is
the ``id`` of the run's ``/v1/agent`` answer (with samples, that id and ``_0``, ``_1``... for
each run; for a code-interpreter response, the response's id). A run is its API key's: with
another key it is a 404, as if absent. ``POST .../fork`` goes on from any step of it as a
new run (``server.runs.fork``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import nbformat
from fastapi import APIRouter, Query, Request, Response

from server.agent.service import PreparedRun, new_run_id
from server.api.agent_schemas import ForkRequest
from server.api.auth import key_of
from server.api.deps import BackgroundDep, RuntimeDep, SettingsDep
from server.api.errors import InvalidRequest, NotFound
from server.api.openapi_errors import EVENT_STREAM
from server.api.routes.agent.run import answer
from server.api.routes.chat import check_model
from server.runs.fork import ForkError, fork_session
from server.runs.notebook import run_notebook
from server.runs.replay import replay

router = APIRouter(prefix="/v1/agent")

Format = Literal["json", "ipynb"]


async def _record(request: Request, run_id: str) -> dict[str, Any]:
    record = await request.app.state.store.agent_runs.run_of(run_id, key_of(request))
    if record is None:
        raise NotFound(f"no agent run '{run_id}' in the store (the id is the `id` of a /v1/agent answer)")
    return record


@router.get("/runs/{run_id}", response_model=None)
async def get_run(
    run_id: str,
    request: Request,
    format: Annotated[Format, Query(description="`json`: the record; `ipynb`: a Jupyter notebook")] = "json",
) -> Response | dict[str, Any]:
    """A run's record (request, steps, outcome), as JSON or as a Jupyter notebook."""
    record = await _record(request, run_id)
    if format == "json":
        return record
    notebook = nbformat.writes(run_notebook(record))
    disposition = f'attachment; filename="{run_id}.ipynb"'
    return Response(notebook, media_type="application/x-ipynb+json", headers={"Content-Disposition": disposition})


@router.post("/runs/{run_id}/replay")
async def replay_run(run_id: str, request: Request, runtime: RuntimeDep, settings: SettingsDep) -> dict[str, Any]:
    """Run the recorded code again in a fresh sandbox session, without the model or any tool,
    and report per step whether its output matches the record (``server.runs.replay``)."""
    record = await _record(request, run_id)
    return await replay(record, runtime.sessions, settings.execution_timeout)


@router.post("/runs/{run_id}/fork", response_model=None, responses=EVENT_STREAM)
async def fork_run(
    run_id: str,
    body: ForkRequest,
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    background: BackgroundDep,
) -> Response:
    """A new run from where the stored run stood after step ``at_step`` (``server.runs.fork``),
    with this request's options; answered as ``/v1/agent`` answers (its own id, streamed,
    detached or whole), the replay's matches in ``agent.fork``."""
    check_model(runtime.engine, body.model)
    owner = key_of(request)
    if body.background:
        background.check_capacity(owner)
    if body.sample_count(settings) > 1:
        raise InvalidRequest("a fork is one run: samples must be 1", param="samples")
    record = await _record(request, run_id)
    try:
        session, replayed = await fork_session(record, body.at_step, runtime.sessions, settings.execution_timeout)
    except ForkError as exc:
        raise InvalidRequest(str(exc), param="at_step") from exc
    await session.lock.acquire()
    mark = len(session.messages)
    session.messages.extend({"role": "user", "content": m.text()} for m in body.messages)
    run = PreparedRun(session, body.agent_options(settings), False, mark, False, new_run_id(), owner)
    fork = {"from_run": run_id, "at_step": body.at_step, "replayed": replayed}
    return await answer(runtime, [run], run.record_id, body, background, request, {"fork": fork})
