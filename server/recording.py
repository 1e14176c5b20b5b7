"""Every agent run into the store, as it happens: its request, each step, its outcome.

An agent-run observer (see ``AgentRuntime.observers``) like the audit log, but into the
store's records (``server.store.agent_runs``) and step by step rather than at the end: a
run that is cut off (a cancel, a killed process) keeps the steps it made. The store's
writes happen on its own thread, so observing costs the token path one queue put a step.
"""

from __future__ import annotations

from server.agent.service import PreparedRun
from server.agent.steps import AgentDone, AgentEvent, StepDone
from server.audit import run_request
from server.store import AgentRunRecords

#: Runs begun and not yet ended that are remembered; a run cancelled mid-way never ends,
#: so past this the oldest are forgotten (a later event of theirs re-begins harmlessly).
OPEN_RUNS_REMEMBERED = 4096


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
            self.records.step(run.record_id, event.step.index, event.step.to_dict())
        else:
            self.records.end(run.record_id, run.outcome(event))
            self._begun.pop(run.record_id, None)

    def _begin(self, run: PreparedRun) -> None:
        request = {**run_request(run), "resumed": run.resumed}
        self.records.begin(run.record_id, run.session.id, request, run.owner)
        self._begun[run.record_id] = None
        while len(self._begun) > OPEN_RUNS_REMEMBERED:
            self._begun.pop(next(iter(self._begun)))
