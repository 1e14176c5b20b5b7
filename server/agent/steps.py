"""Plain step and event objects the agent loop yields; callers render, log or stream them.

Events, in the order a client sees them::

    TurnDelta     a piece of the model's text, already split into thought / code / answer
    StepDone      one turn finished: its action, and the observation if code ran
    AgentDone     the loop ended: why, the final message, summed usage
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from models.engine.usage import Usage
from sandbox.result import ExecResult
from server.agent.actions import ActionType, Channel
from server.agent.policy import ForcedReason

AgentFinish = Literal["solution", "no_action", "max_turns", "length", "error", "cancelled"]


@dataclass
class Observation(ExecResult):
    """What the model read after an action: the execution's result and the message it became.

    An ``ExecResult`` plus the message, rather than a copy of its fields: the fields the
    sandbox reports are the fields every caller (the JSON steps, the audit log, the web
    page) shows. A note from the server (no code ran) has the defaults and its ``text``.
    """

    text: str = ""  # the user message the model reads next
    repeated: bool = False  # the same code already printed the same output in this request

    @classmethod
    def of(cls, result: ExecResult, text: str, *, cut: bool = False, repeated: bool = False) -> Observation:
        """``result`` as the model read it (``cut``: the message shortened its output)."""
        values = {f.name: getattr(result, f.name) for f in fields(ExecResult)}
        values["truncated"] = result.truncated or cut
        return cls(**values, text=text, repeated=repeated)

    def payload(self) -> dict[str, Any]:
        """The documented JSON shape of an observation in a step."""
        return {
            "stdout": self.stdout,
            "stderr": self.stderr,
            "error": self.error,
            "timed_out": self.timed_out,
            "truncated": self.truncated,
            "files": self.files,
            "killed_reason": self.killed_reason,
            "state_lost": self.state_lost,
            "repeated": self.repeated,
            "host_calls": [call.to_json() for call in self.host_calls],
            "host_calls_omitted": self.host_calls_omitted,
            "message": self.text,
        }


@dataclass
class Action:
    type: ActionType
    code: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class Step:
    """One assistant turn and, for code, its execution.

    Frozen: a step is built whole, and what happens to the turn afterwards (its rewrite, its
    execution, being left out) makes a new step (``dataclasses.replace``), so a step handed to
    an observer or a session never changes under it."""

    index: int
    thought: str
    action: Action
    raw: str
    observation: Observation | None = None
    #: What the turn cost up to its own execution: its generation, and the whole cost of the
    #: attempt it replaced (a turn taken again). ``usage`` adds the execution.
    turn_usage: Usage = field(default_factory=Usage)
    generation_finish: str = "stop"
    phases: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: Why the loop policy made this turn a solution-only turn: "repeat", "fed_back" or "last_turn".
    forced: ForcedReason | None = None
    #: With ``forced`` "repeat" or "fed_back": the code the model asked to run (not shown to
    #: it; fed-back code is not run either).
    repeated_code: str | None = None
    #: Sampled (not greedy) because the turn before was left out (``on_failed_repeat``,
    #: ``literal_code``, ``unrun_answer``).
    resampled: bool = False
    #: This turn repeated a failure, ran code that computes nothing, or answered before any
    #: code ran, and is not in the history the model reads (nor in the session's messages):
    #: ``on_failed_repeat``, ``literal_code`` or ``unrun_answer`` set to ``resample``.
    left_out: bool = False
    #: A forced answer that disagreed with the one value the last execution printed, and that
    #: value became the answer instead (``forced_answer: output``): the model's own words.
    overruled_answer: str | None = None

    @property
    def usage(self) -> Usage:
        """The step's whole cost: ``turn_usage`` and, if its code ran, the sandbox's cost."""
        ran = self.observation  # only code that ran has one
        if ran is None:
            return self.turn_usage
        return self.turn_usage.with_execution(ran.cpu_ms, ran.peak_memory_mb, ran.duration_s * 1000)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TurnDelta:
    step_index: int
    channel: Channel
    text: str


@dataclass
class StepDone:
    step: Step


@dataclass
class AgentDone:
    finish_reason: AgentFinish
    message: str
    turns: int
    usage: Usage  # the run's: every step's, summed
    error: str | None = None
    forced_answer: ForcedReason | None = None  # the answer came from a solution-only turn


AgentEvent = TurnDelta | StepDone | AgentDone
