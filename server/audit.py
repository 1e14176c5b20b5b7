"""Optional JSONL audit log: one line per finished agent run (``--audit-log PATH``).

Model-written code runs on this machine; an operator may need to show afterwards what
was asked, what code ran and what it printed. Each line holds the session, the options,
every message of the run (the new user messages, the system prompt of a new session, the
assistant turns and the observations the model read), the structured steps (action,
code, observation) and the outcome. Off by default: the log holds whatever users and code
printed, so it is created owner-read/write only.

``AuditLog.observe`` is an agent-run observer (see ``AgentRuntime.observers``); it acts on
the final event only, when the run's steps are all on the session. A failed write is
logged and does not stop the agent.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from server.agent.service import PreparedRun
from server.agent.steps import AgentDone, AgentEvent

log = logging.getLogger(__name__)


class AuditLog:
    """Append-only JSON lines, flushed after each record."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")
        self._lock = threading.Lock()

    def observe(self, run: PreparedRun, event: AgentEvent) -> None:
        if isinstance(event, AgentDone):
            self.write(run_record(run, event))

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self._lock:
            try:
                self._file.write(line + "\n")
                self._file.flush()
            except (OSError, ValueError):
                log.exception("could not write the audit log %s", self.path)

    def close(self) -> None:
        with self._lock:
            self._file.close()


def run_record(run: PreparedRun, done: AgentDone) -> dict[str, Any]:
    """What one agent run asked for, did and answered, as plain JSON: the run's outcome
    (the same fields the API reports) plus its request and the steps in full."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **run_request(run),
        "steps": [step.to_dict() for step in run.steps_of(done)],
        **run.outcome(done),
    }


def run_request(run: PreparedRun) -> dict[str, Any]:
    """What the run was asked, as plain JSON: the same fields here and in the store's records
    (``server.recording``)."""
    return {
        "new_session": run.created,
        "options": dataclasses.asdict(run.options),
        "tools": [tool.name for tool in run.session.tools],
        "messages": run.session.messages[run.mark :],
    }
