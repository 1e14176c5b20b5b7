"""`ExecResult`: what one `run` produced, and how to say it to the model.

Why a `notice` property: the agent loop shows the model plain words, and the words for
"your variables are gone because the worker was killed for using too much memory" belong
next to the fields they summarise, not in every caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sandbox.host_calls import HostCallRecord

KilledReason = Literal["timeout", "memory", "output", "crashed", "processes", "disk", "cancelled"]

_REASON_WORDS: dict[str, str] = {
    "timeout": "it ran past its time limit",
    "memory": "it used more memory than allowed",
    "output": "it printed far more output than allowed",
    "crashed": "the worker process crashed or exited",
    "processes": "it started more processes than allowed",
    "disk": "it wrote more data to the workspace than allowed",
    "cancelled": "the execution was cancelled",
}


@dataclass
class ExecResult:
    """The outcome of one `Sandbox.run`.

    `killed_reason` is one of None, "timeout", "memory", "output", "crashed", and (as
    extensions) "processes", "disk" and "cancelled". `files` are workspace-relative paths
    of regular files created or modified by this run.
    """

    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    timed_out: bool = False
    killed_reason: KilledReason | None = None
    state_lost: bool = False
    truncated: bool = False
    duration_s: float = 0.0
    files: list[str] = field(default_factory=list)
    detail: str | None = None
    #: Calls the code made to tools outside the sandbox, in order (see sandbox/host_calls.py),
    #: the first ``MAX_RECORDS`` of them; how many more were made and not recorded.
    host_calls: list[HostCallRecord] = field(default_factory=list)
    host_calls_omitted: int = 0
    #: What the run cost, as the kernel counted it for the worker and its children: CPU
    #: milliseconds (user and system, children it waited for included) and the highest
    #: resident memory seen (see ``Sandbox._execute``). Wall time is ``duration_s``.
    cpu_ms: float = 0.0
    peak_memory_mb: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the code ran to completion without raising."""
        return self.error is None and self.killed_reason is None

    @property
    def notice(self) -> str | None:
        """Plain words for the model about kills, lost state and truncation; None if nothing."""
        parts: list[str] = []
        if self.killed_reason == "output":
            parts.append(
                "The run was stopped because "
                + _REASON_WORDS["output"]
                + "; print summaries (counts, head/tail) instead of everything."
            )
        elif self.killed_reason is not None:
            words = _REASON_WORDS.get(self.killed_reason, self.killed_reason)
            parts.append(f"The execution was stopped because {words}.")
        if self.detail:
            parts.append(self.detail)
        if self.state_lost:
            parts.append(
                "The Python process was restarted, so all variables, imports and function "
                "definitions from earlier runs are gone; re-run the code that defines what you "
                "need. Files in the workspace were kept."
            )
        if self.truncated and self.killed_reason != "output":
            parts.append("The output was too long and was truncated in the middle.")
        return " ".join(parts) or None
