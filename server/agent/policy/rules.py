"""The loop's reactions as one ordered table of rules: the option, a condition on the facts,
the reaction. The first rule of a stage whose condition holds decides.

Why a table: each reaction option used to be a function taking a row of loose booleans, and
honouring a new one meant new arguments threaded through the loop. Here a new reaction
option is one field in ``ReactionOptions``, one ``Rule`` below and at most one field of ``Facts``;
``Judge`` (``server.agent.policy.judge``) builds the facts in one place and the loop only
carries out what a stage returns.

The stages, in the order a turn meets them:

- ``before_run``: ``<execute>`` code, before it runs (code fed its own output is not run);
- ``after_run``: an execution's output (repeats, code that computes nothing);
- ``after_turn``: the whole turn (a solution, a turn without an action); an ``<execute>``
  turn goes on as its ``after_run`` reaction said.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from server.agent.actions import ActionType
from server.agent.options import ReactionOptions
from server.agent.policy.decisions import (
    ANSWER_FED_BACK,
    ANSWER_ONLY,
    LEAVE_OUT,
    NOTE,
    OBSERVE,
    ForcedReason,
    Reaction,
)

Stage = Literal["before_run", "after_run", "after_turn"]


@dataclass(frozen=True)
class Facts:
    """What a decision may read about a turn (built by ``Judge``, one place for all of them)."""

    action: ActionType
    #: Why the turn was asked to be an answer only (None: a free turn).
    forced: ForcedReason | None = None
    turns_left: int = 0
    generation_finish: str = "stop"
    #: An answer now is backed: code that computes ran in this run, the session has earlier
    #: turns, or this run already left out an answer given before any code ran.
    backed: bool = False
    #: The code is the last code again, run on the one value that printed (``fed_back_output``).
    fed_back: bool = False
    #: The same code already printed the same output in this request.
    repeated: bool = False
    #: The execution failed (an error, a timeout, a kill).
    failed: bool = False
    #: The code only prints constants written in it: it computes nothing.
    literal: bool = False


Condition = Callable[[ReactionOptions, Facts], bool]


@dataclass(frozen=True)
class Rule:
    stage: Stage
    #: The ``ReactionOptions`` field this rule honours; None: CodeAct's own protocol.
    option: str | None
    when: Condition
    reaction: Reaction


FINISH_SOLUTION = Reaction("finish", "solution")
FINISH_LENGTH = Reaction("finish", "length")
FINISH_NO_ACTION = Reaction("finish", "no_action")

RULES: tuple[Rule, ...] = (
    # Code that feeds the last output back into the last code is taken again as an answer, unrun.
    Rule("before_run", "fed_back_output", lambda p, f: f.fed_back and p.fed_back_output == "answer", ANSWER_FED_BACK),
    # Output that only repeats the code's own text is left out, the next turn sampled.
    Rule(
        "after_run",
        "literal_code",
        lambda p, f: p.literal_code == "resample" and f.literal and not f.failed and f.turns_left > 0,
        LEAVE_OUT,
    ),
    Rule("after_run", "on_repeat", lambda p, f: not f.repeated or p.on_repeat == "off", OBSERVE),
    Rule("after_run", "on_repeat", lambda p, f: p.on_repeat == "note", NOTE),
    # A repeat whose output shows something: that output is the answer.
    Rule("after_run", "on_repeat", lambda p, f: not (f.failed or f.literal), ANSWER_ONLY),
    # A repeat that shows nothing (a failure, the code's own text) is no answer.
    Rule("after_run", "on_failed_repeat", lambda p, f: p.on_failed_repeat == "note", NOTE),
    Rule("after_run", "on_failed_repeat", lambda p, f: f.turns_left > 0, LEAVE_OUT),
    Rule("after_run", None, lambda p, f: True, OBSERVE),  # the last turn: nothing to sample
    # A first answer given before any code ran is left out, the next turn sampled.
    Rule(
        "after_turn",
        "unrun_answer",
        lambda p, f: (
            f.action == "solution"
            and f.forced is None
            and not f.backed
            and p.unrun_answer == "resample"
            and f.turns_left > 0
        ),
        LEAVE_OUT,
    ),
    Rule("after_turn", None, lambda p, f: f.action == "solution", FINISH_SOLUTION),
    Rule("after_turn", None, lambda p, f: f.action == "none" and f.generation_finish == "length", FINISH_LENGTH),
    Rule("after_turn", None, lambda p, f: f.action == "none", FINISH_NO_ACTION),
)


def decide(stage: Stage, policy: ReactionOptions, facts: Facts) -> Reaction | None:
    """The reaction of the first rule of ``stage`` that holds; None when none does."""
    for rule in RULES:
        if rule.stage == stage and rule.when(policy, facts):
            return rule.reaction
    return None
