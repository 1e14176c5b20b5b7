"""`Judge`: the loop policy of one run, the one place that builds the facts its rules read.

Why an object: some facts span turns (what the last execution printed, which code already
printed what, whether code that computes ran yet, whether an answer was already left out),
and they used to live in three places in the loop, handed to the decisions as rows of
booleans. The judge keeps them, turns each thing that happens into ``Facts`` and asks the
rule table (``server.agent.policy.rules``); the loop asks the judge at four moments (plan,
rewrite, before and after running code, after the turn) and carries out the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.result import ExecResult
from server.agent.actions import ActionType
from server.agent.options import ReactionOptions
from server.agent.policy.decisions import ForcedReason, Reaction, Rewrite, TurnPlan, plan_turn, rewrite
from server.agent.policy.detectors import RepeatTracker, failed, feeds_output_back, prints_only_literals
from server.agent.policy.rules import Facts, decide
from server.agent.policy.values import one_value


@dataclass(frozen=True)
class Ran:
    """What an execution leads to: the reaction, and what its observation should say."""

    reaction: Reaction
    #: The same code already printed the same output (the step reports it).
    repeated: bool
    #: The observation says the code computed nothing (``literal_code: note``).
    notes_literal: bool


class Judge:
    """The policy of one run (``follow_up``: the session has earlier turns)."""

    def __init__(self, policy: ReactionOptions, max_turns: int, follow_up: bool) -> None:
        self.policy, self.max_turns = policy, max_turns
        self.repeats = RepeatTracker()
        self.last_value: str | None = None  # what the last execution printed, if one short value
        self.last_code: str | None = None  # the code that printed it
        self.ran_code = False  # whether code that computes something ran in this run
        self.left_out_answer = False  # whether an answer given before any code ran was left out
        self.follow_up = follow_up

    def plan(self, turn: int, after_left_out: bool) -> TurnPlan:
        """How turn ``turn`` is generated (``after_left_out``: the turn before was left out)."""
        return plan_turn(self.policy, turn, self.max_turns, after_left_out)

    def rewrite(self, action: ActionType, answer: str | None, forced: ForcedReason | None) -> Rewrite:
        """What a generated turn is taken as (``server.agent.policy.decisions.rewrite``)."""
        return rewrite(self.policy, action, answer, forced, self.last_value)

    def before_run(self, code: str) -> Reaction | None:
        """The reaction to ``<execute>`` code before it runs; None: run it."""
        fed_back = feeds_output_back(code, self.last_code, self.last_value)
        return decide("before_run", self.policy, Facts("execute", fed_back=fed_back))

    def after_run(self, code: str, result: ExecResult, output: str, turns_left: int) -> Ran:
        """The reaction to an execution of ``code`` (``output``: what the model reads of it)."""
        self.last_value, self.last_code = one_value(result), code
        repeated = self.repeats.is_repeat(code, output)
        literal, broke = prints_only_literals(code), failed(result)
        self.ran_code = self.ran_code or not literal
        facts = Facts("execute", turns_left=turns_left, repeated=repeated, failed=broke, literal=literal)
        reaction = decide("after_run", self.policy, facts)
        assert reaction is not None, "the after_run rules end with one that always holds"
        notes_literal = self.policy.literal_code == "note" and literal and not broke
        return Ran(reaction, repeated, notes_literal)

    def after_turn(
        self,
        action: ActionType,
        generation_finish: str,
        forced: ForcedReason | None,
        turns_left: int,
        output: Reaction | None,
    ) -> Reaction:
        """What the loop does after the turn; ``output``: the reaction to its code, if any ran
        (an ``<execute>`` turn goes on as that said)."""
        backed = self.follow_up or self.ran_code or self.left_out_answer
        facts = Facts(action, forced, turns_left, generation_finish, backed=backed)
        reaction = decide("after_turn", self.policy, facts)
        if reaction is None:
            assert output is not None, "an <execute> turn reacts to its code"
            return output
        if action == "solution" and reaction.kind == "leave_out":
            self.left_out_answer = True  # at first sight only
        return reaction
