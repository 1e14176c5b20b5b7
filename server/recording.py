"""Every agent run into the store, as it happens: its request, each step, its outcome.

An agent-run observer (see ``AgentRuntime.observers``) like the audit log, but into the
store's records (``server.store.agent_runs``) and step by step rather than at the end: a
run that is cut off (a cancel, a killed process) keeps the steps it made. The store's
writes happen on its own thread, so observing costs the token path one queue put a step.
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path, PurePosixPath

from sandbox import workspace
from server.agent.service import PreparedRun
from server.agent.steps import AgentDone, AgentEvent, StepDone
from server.audit import run_request
from server.store import AgentRunRecords

#: Runs begun and not yet ended that are remembered; a run cancelled mid-way never ends,
#: so past this the oldest are forgotten (a later event of theirs re-begins harmlessly).
OPEN_RUNS_REMEMBERED = 4096
#: Images a step wrote are kept in its record (the workspace ends with its session, and a
#: later step may overwrite the file): at most this many per step, each at most this big.
IMAGES_PER_STEP = 4
IMAGE_BYTES = 2 * 1024 * 1024
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


class RunRecorder:
    """Writes a run's request at its first event, each ``StepDone`` and the ``AgentDone``."""

    def __init__(self, records: AgentRunRecords) -> None:
        self.records = records
        self._begun: dict[str, None] = {}

    def observe(self, run: PreparedRun, event: AgentEvent) -> None:
        if not isinstance(event, StepDone | AgentDone):
            return  # deltas are the token path; a step carries their text when it ends
        if run.record_id not in self._begun:
            self._begin(run)
        if isinstance(event, StepDone):
            step = {**event.step.to_dict(), "usage": event.step.usage.payload()}
            images = _images(run, event.step.observation.files if event.step.observation else [])
            if images:
                step["images"] = images
            self.records.step(run.record_id, event.step.index, step)
        else:
            self.records.end(run.record_id, run.outcome(event))
            self._begun.pop(run.record_id, None)

    def _begin(self, run: PreparedRun) -> None:
        request = {**run_request(run), "resumed": run.resumed}
        self.records.begin(run.record_id, run.session.id, request, run.owner)
        self._begun[run.record_id] = None
        while len(self._begun) > OPEN_RUNS_REMEMBERED:
            self._begun.pop(next(iter(self._begun)))


def _images(run: PreparedRun, files: list[str]) -> list[dict[str, str]]:
    """The images among ``files`` as ``{path, mime, data}`` (base64), read from the workspace
    without following links (code of a later request could swap a file for a link)."""
    kept: list[dict[str, str]] = []
    for path in files:
        mime = IMAGE_TYPES.get(PurePosixPath(path).suffix.lower())
        if mime is None or len(kept) >= IMAGES_PER_STEP:
            continue
        with contextlib.suppress(OSError, workspace.UnsafePath):
            fd, info = workspace.open_file(Path(run.session.workspace), path)
            with os.fdopen(fd, "rb") as handle:
                if info.st_size <= IMAGE_BYTES:
                    kept.append({"path": path, "mime": mime, "data": base64.b64encode(handle.read()).decode()})
    return kept
