"""The loop's plans and reactions: how a turn is generated, what it is taken as, and the
reactions the rule table (``server.agent.policy.rules``) chooses from.

Why pure: each decision is a table (``tests/server/agent/test_policy_table.py``) of the
options against the facts of a turn; the loop only asks and carries out. What each option
is for is in ``server.agent.policy``'s doc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from server.agent.actions import ActionType, clean_code
from server.agent.options import ReactionOptions
from server.agent.policy.detectors import looks_like_code
from server.agent.policy.values import states_value

ForcedReason = Literal["repeat", "fed_back", "last_turn"]
FinishReason = Literal["solution", "no_action", "length"]
#: Sampling for the turn after a failed repeat: enough to leave a loop, little enough to
#: stay on the task. The seed keeps a temperature-0 run reproducible.
RESAMPLE_TEMPERATURE = 0.7
RESAMPLE_SEED = 1

#: How a forced answer is explained to people (transcript, terminal, web page).
FORCED_NOTES: dict[str, str] = {
    "repeat": "answer forced: the model repeated code whose output it had already seen",
    "fed_back": "answer forced: the model ran its code again on the output it had printed",
    "last_turn": "answer forced: the turn limit was reached",
}


@dataclass(frozen=True)
class TurnPlan:
    """How a turn is generated: free, or answer-only (``forced`` says why); greedy or sampled."""

    forced: ForcedReason | None = None
    sampled: bool = False


def plan_turn(policy: ReactionOptions, turn: int, max_turns: int, after_left_out: bool) -> TurnPlan:
    """The plan of turn ``turn`` (0-based); ``after_left_out``: the turn before was left out.

    A forced answer opens ``<solution>`` at once (thinking first lets small models talk
    themselves back into running code), and is never sampled.
    """
    forced: ForcedReason | None = "last_turn" if policy.forces_last_turn(turn, max_turns) else None
    return TurnPlan(forced, sampled=after_left_out and forced is None)


Rewrite = Literal["keep", "as_execute", "answer_from_code", "answer_from_output"]


def rewrite(
    policy: ReactionOptions,
    action: ActionType,
    answer: str | None,
    forced: ForcedReason | None,
    last_value: str | None = None,
) -> Rewrite:
    """What a generated turn is taken as (``code_answer``, ``forced_answer``).

    A ``<solution>`` whose body is code is a model that meant to run it: on a free turn it
    becomes that ``<execute>`` (``"as_execute"``); on an answer-only turn it runs and what
    it prints is the answer (``"answer_from_code"``). A forced answer that disagrees with
    ``last_value``, the one short value the last execution printed, is replaced by it
    (``"answer_from_output"``).
    """
    if action != "solution":
        return "keep"
    if policy.code_answer == "run" and looks_like_code(clean_code(answer or "")):
        return "as_execute" if forced is None else "answer_from_code"
    if forced is not None and policy.forced_answer == "output" and last_value is not None:
        return "keep" if states_value(answer or "", last_value) else "answer_from_output"
    return "keep"


ReactionKind = Literal["observe", "note", "leave_out", "answer_only", "finish"]


@dataclass(frozen=True)
class Reaction:
    """What the loop does after a turn acted.

    ``observe``: its observation goes into the history, the next turn reads it; ``note``:
    the same, with the repeat note in the observation; ``leave_out``: the turn leaves the
    history and the next turn is sampled; ``answer_only``: the turn is taken again as an
    answer-only turn (``forced`` says why), ``<solution>`` opened right after the
    observation the model already read; ``finish``: the run ends, for ``finish``'s reason.
    """

    kind: ReactionKind
    finish: FinishReason | None = None
    forced: ForcedReason | None = None

    def answer_plan(self) -> TurnPlan | None:
        """The plan of the turn taken again, if this reaction takes it again."""
        return TurnPlan(forced=self.forced) if self.kind == "answer_only" else None


OBSERVE, NOTE, LEAVE_OUT = Reaction("observe"), Reaction("note"), Reaction("leave_out")
#: A repeat taken again as an answer; code fed its own output, taken as an answer unrun.
ANSWER_ONLY = Reaction("answer_only", forced="repeat")
ANSWER_FED_BACK = Reaction("answer_only", forced="fed_back")
