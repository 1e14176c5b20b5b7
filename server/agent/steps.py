"""Plain step and event objects the agent loop yields; callers render, log or stream them.

Events, in the order a client sees them::

    TurnDelta     a piece of the model's text, already split into thought / code / answer
    StepDone      one turn finished: its action, and the observation if code ran
    AgentDone     the loop ended: why, the final message, summed usage
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from server.agent.actions import ActionType, Channel
from server.agent.policy import ForcedReason

AgentFinish = Literal["solution", "no_action", "max_turns", "length", "error", "cancelled"]


@dataclass
class Observation:
    """What running one ``<execute>`` block produced (the structured side of the message)."""

    stdout: str
    stderr: str
    error: str | None
    timed_out: bool
    truncated: bool
    files: list[str]
    killed_reason: str | None = None
    state_lost: bool = False
    duration_s: float = 0.0
    text: str = ""  # the user message the model reads next
    repeated: bool = False  # the same code already printed the same output in this request
    #: Calls of tools outside the sandbox: tool, arguments, duration_s, error (sandbox.host_calls).
    host_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Action:
    type: ActionType
    code: str | None = None
    answer: str | None = None


@dataclass
class Step:
    """One assistant turn and, for code, its execution."""

    index: int
    thought: str
    action: Action
    raw: str
    observation: Observation | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    generation_finish: str = "stop"
    phases: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: Why the loop policy made this turn a solution-only turn: "repeat" or "last_turn".
    forced: ForcedReason | None = None
    #: With ``forced == "repeat"``: the code the model asked to run again (not shown to it).
    repeated_code: str | None = None

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
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None
    forced_answer: ForcedReason | None = None  # the answer came from a solution-only turn


AgentEvent = TurnDelta | StepDone | AgentDone
