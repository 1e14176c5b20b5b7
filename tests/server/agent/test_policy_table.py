"""Every decision a loop option drives, as a table: the rule table of ``server.agent.policy``
(``decide`` on ``Facts``) and the pure functions beside it, no engine, no executor. The
loop tests (test_loop.py) check that the loop carries them out."""

from __future__ import annotations

import pytest

from sandbox.result import ExecResult
from server.agent.options import LoopPolicy
from server.agent.policy import (
    ANSWER_FED_BACK,
    ANSWER_ONLY,
    LEAVE_OUT,
    NOTE,
    OBSERVE,
    RULES,
    Facts,
    Judge,
    Reaction,
    TurnPlan,
    decide,
    failed,
    feeds_output_back,
    one_value,
    plan_turn,
    prints_only_literals,
    rewrite,
)

DEFAULT = LoopPolicy()
NOTE_LITERAL = LoopPolicy(literal_code="note")


@pytest.mark.parametrize(
    ("policy", "turn", "max_turns", "after_left_out", "plan"),
    [
        (DEFAULT, 0, 5, False, TurnPlan()),
        (DEFAULT, 3, 5, False, TurnPlan()),
        (DEFAULT, 4, 5, False, TurnPlan(forced="last_turn")),  # the last turn can only answer
        (DEFAULT, 2, 5, True, TurnPlan(sampled=True)),  # after a left-out repeat: sampled
        (DEFAULT, 4, 5, True, TurnPlan(forced="last_turn")),  # a forced answer is never sampled
        (DEFAULT, 0, 1, False, TurnPlan()),  # a one-turn budget may still run code
        (LoopPolicy(final_answer=False), 4, 5, False, TurnPlan()),
    ],
)
def test_plan_turn(policy: LoopPolicy, turn: int, max_turns: int, after_left_out: bool, plan: TurnPlan) -> None:
    assert plan_turn(policy, turn, max_turns, after_left_out) == plan


@pytest.mark.parametrize(
    ("policy", "action", "answer", "forced", "expected"),
    [
        (DEFAULT, "solution", "42", None, "keep"),  # a value is an answer
        (DEFAULT, "solution", "2**100 % 997", None, "keep"),
        (DEFAULT, "solution", "print(6 * 7)", None, "as_execute"),  # code meant to run
        (DEFAULT, "solution", "python\nprint(x)\n", None, "as_execute"),  # a fence's language line
        (DEFAULT, "solution", "print(x)", "last_turn", "answer_from_code"),  # answer-only: run it
        (DEFAULT, "solution", "print(x)", "repeat", "answer_from_code"),
        (DEFAULT, "execute", None, None, "keep"),
        (DEFAULT, "none", None, None, "keep"),
        (LoopPolicy(code_answer="off"), "solution", "print(6 * 7)", None, "keep"),
        (LoopPolicy(code_answer="off"), "solution", "print(x)", "last_turn", "keep"),
    ],
)
def test_rewrite(policy: LoopPolicy, action: str, answer: str | None, forced: str | None, expected: str) -> None:
    assert rewrite(policy, action, answer, forced) == expected


MODEL_ANSWERS = LoopPolicy(forced_answer="model")


@pytest.mark.parametrize(
    ("policy", "answer", "forced", "last_value", "expected"),
    [
        (DEFAULT, "229", "repeat", "1229", "answer_from_output"),  # its prior, not the output above
        (DEFAULT, "Monday", "last_turn", "Tuesday", "answer_from_output"),
        (DEFAULT, "1229", "repeat", "1229", "keep"),
        (DEFAULT, "There are 1,229 primes.", "repeat", "1229", "keep"),  # the same number, in words
        (DEFAULT, "40.6", "repeat", "The average age is: 40.6", "keep"),  # one number: the number counts
        (DEFAULT, "It was a Tuesday.", "repeat", "Tuesday", "keep"),
        (DEFAULT, "229", None, "1229", "keep"),  # a free answer is the model's to give
        (DEFAULT, "229", "repeat", None, "keep"),  # no one short value above it
        (DEFAULT, "print(x)", "repeat", "1229", "answer_from_code"),  # code first: it runs
        (MODEL_ANSWERS, "229", "repeat", "1229", "keep"),
    ],
)
def test_rewrite_of_a_forced_answer(
    policy: LoopPolicy, answer: str, forced: str | None, last_value: str | None, expected: str
) -> None:
    assert rewrite(policy, "solution", answer, forced, last_value) == expected


@pytest.mark.parametrize(
    ("stdout", "error", "value"),
    [("1229\n", None, "1229"), ("a\nb\n", None, None), ("9" * 41, None, None), ("", None, None), ("7\n", "E", None)],
)
def test_one_value(stdout: str, error: str | None, value: str | None) -> None:
    assert one_value(ExecResult(stdout=stdout, error=error)) == value


RESAMPLE, NOTE_FAILED = LoopPolicy(), LoopPolicy(on_failed_repeat="note")


@pytest.mark.parametrize(
    ("policy", "repeated", "answers_nothing", "turns_left", "reaction"),
    [
        (RESAMPLE, False, False, 3, OBSERVE),  # new output: the model reads it
        (RESAMPLE, False, True, 3, OBSERVE),  # a first failure is an observation like any other
        (RESAMPLE, True, False, 3, ANSWER_ONLY),  # a repeat that shows an answer: answer now
        (RESAMPLE, True, False, 0, ANSWER_ONLY),  # even on the last turn
        (RESAMPLE, True, True, 3, LEAVE_OUT),  # a repeated failure: left out, next turn sampled
        (RESAMPLE, True, True, 0, OBSERVE),  # no next turn to sample
        (NOTE_FAILED, True, True, 3, NOTE),
        (NOTE_FAILED, True, True, 0, NOTE),
        (NOTE_FAILED, True, False, 3, ANSWER_ONLY),
        (LoopPolicy(on_repeat="note"), True, False, 3, NOTE),
        (LoopPolicy(on_repeat="note"), True, True, 3, NOTE),
        (LoopPolicy(on_repeat="note"), False, False, 3, OBSERVE),
        (LoopPolicy(on_repeat="off"), True, False, 3, OBSERVE),
        (LoopPolicy(on_repeat="off"), True, True, 3, OBSERVE),
    ],
)
def test_after_run(
    policy: LoopPolicy, repeated: bool, answers_nothing: bool, turns_left: int, reaction: Reaction
) -> None:
    facts = Facts("execute", turns_left=turns_left, repeated=repeated, failed=answers_nothing)
    assert decide("after_run", policy, facts) == reaction


@pytest.mark.parametrize(
    ("policy", "repeated", "turns_left", "reaction"),
    [
        (DEFAULT, False, 3, LEAVE_OUT),  # `resample`: at first sight, a turn early
        (DEFAULT, True, 3, LEAVE_OUT),
        (DEFAULT, False, 0, OBSERVE),  # no next turn to sample
        (NOTE_LITERAL, False, 3, OBSERVE),  # observed, with the note
        (NOTE_LITERAL, True, 3, LEAVE_OUT),  # its repeat answers nothing: on_failed_repeat's
        (LoopPolicy(literal_code="off"), False, 3, OBSERVE),
    ],
)
def test_after_run_of_literal_code(policy: LoopPolicy, repeated: bool, turns_left: int, reaction: Reaction) -> None:
    facts = Facts("execute", turns_left=turns_left, repeated=repeated, literal=True)
    assert decide("after_run", policy, facts) == reaction


@pytest.mark.parametrize(
    ("action", "finish", "reaction"),
    [
        ("solution", "stop", Reaction("finish", "solution")),
        ("none", "stop", Reaction("finish", "no_action")),
        ("none", "length", Reaction("finish", "length")),  # cut by the token budget
        ("execute", "stop", None),  # goes on as its output said (after_run)
        ("execute", "length", None),
    ],
)
def test_after_turn(action: str, finish: str, reaction: Reaction | None) -> None:
    facts = Facts(action, generation_finish=finish, turns_left=3, backed=True)  # type: ignore[arg-type]
    assert decide("after_turn", LoopPolicy(), facts) == reaction


def test_a_turn_that_ran_code_for_an_answer_finishes_with_it() -> None:
    judge = Judge(LoopPolicy(), max_turns=5, follow_up=False)
    assert judge.after_turn("solution", "stop", "last_turn", 0, NOTE) == Reaction("finish", "solution")
    assert judge.after_turn("execute", "stop", None, 3, ANSWER_ONLY) == ANSWER_ONLY


@pytest.mark.parametrize(
    ("code", "result", "nothing"),
    [
        ("print(6 * 7)", ExecResult(stdout="42\n"), False),
        ("print(F)", ExecResult(error="NameError: name 'F' is not defined"), True),
        ("while True: pass", ExecResult(timed_out=True), True),
        ("x = [0] * 10**10", ExecResult(killed_reason="memory"), True),
        ('print("Median:")', ExecResult(stdout="Median:\n"), True),  # only its own literal text
    ],
)
def test_what_shows_nothing(code: str, result: ExecResult, nothing: bool) -> None:
    assert (failed(result) or prints_only_literals(code)) is nothing


@pytest.mark.parametrize(
    ("policy", "code", "result", "noted"),
    [
        (NOTE_LITERAL, 'print("Counting zeros...")', ExecResult(stdout="Counting zeros...\n"), True),
        (NOTE_LITERAL, "print(30)", ExecResult(stdout="30\n"), True),  # a value written in, not computed
        (NOTE_LITERAL, "3021", ExecResult(stdout="3021\n"), True),  # a bare constant shows itself
        (NOTE_LITERAL, 'print(f"total: {12 * 2.5}")', ExecResult(stdout="total: 30.0\n"), False),
        (NOTE_LITERAL, "print(sum(range(10)))", ExecResult(stdout="45\n"), False),
        (NOTE_LITERAL, 'x = "a"\nprint(x)', ExecResult(stdout="a\n"), False),  # an assignment is code
        (NOTE_LITERAL, 'print("a")', ExecResult(error="OSError: stdout closed"), False),  # a failure says itself
        (NOTE_LITERAL, 'print("a")', ExecResult(timed_out=True), False),
        (DEFAULT, "print(30)", ExecResult(stdout="30\n"), False),  # `resample`: left out, not noted
        (LoopPolicy(literal_code="off"), "print(30)", ExecResult(stdout="30\n"), False),
    ],
)
def test_notes_literal_code(policy: LoopPolicy, code: str, result: ExecResult, noted: bool) -> None:
    assert Judge(policy, max_turns=5, follow_up=False).after_run(code, result, result.stdout, 3).notes_literal is noted


CELSIUS = "print((98.6 - 32) * 5 / 9)"


@pytest.mark.parametrize(
    ("code", "last_code", "last_value", "fed_back"),
    [
        ("print((37.0 - 32) * 5 / 9)", CELSIUS, "37.0", True),  # its output as its input
        ("print((37 - 32) * 5 / 9)", CELSIUS, "37.0", True),  # the same number, written as an int
        ("# again\nprint( (37.0-32)*5/9 )", CELSIUS, "37.0", True),  # comments and spacing do not count
        ("x = 'olleh'\nprint(x[::-1])", "x = 'hello'\nprint(x[::-1])", "olleh", True),  # a text value
        ("print((37.0 - 32) * 5 / 9)", CELSIUS, "36.9", False),  # a constant that is not the output
        ("print((37.0 - 30) * 5 / 9)", CELSIUS, "37.0", False),  # another constant changed too
        (CELSIUS, CELSIUS, "37.0", False),  # the same code: a repeat, not this
        ("print((37.0 - 32) * 9 / 5)", CELSIUS, "37.0", False),  # a different computation
        ("print(37.0 * 1.8 + 32)", CELSIUS, "37.0", False),  # other code on the output: a next step
        ("print((37.0 - 32) * 5 / 9)", CELSIUS, None, False),  # the last output was not one value
        ("print((37.0 - 32) * 5 / 9)", None, None, False),  # nothing ran before
        ("print((37.0 - 32) * 5 /", CELSIUS, "37.0", False),  # not Python
        ("print(True)", "print(False)", "True", False),  # booleans are not values fed back
    ],
)
def test_feeds_output_back(code: str, last_code: str | None, last_value: str | None, fed_back: bool) -> None:
    assert feeds_output_back(code, last_code, last_value) is fed_back


@pytest.mark.parametrize(
    ("policy", "fed_back", "reaction"),
    [
        (DEFAULT, True, ANSWER_FED_BACK),  # not run: answer from the output it would consume
        (DEFAULT, False, None),  # run it
        (LoopPolicy(fed_back_output="off"), True, None),
    ],
)
def test_before_run(policy: LoopPolicy, fed_back: bool, reaction: Reaction | None) -> None:
    assert decide("before_run", policy, Facts("execute", fed_back=fed_back)) == reaction


def test_an_answer_after_fed_back_code_is_forced_as_such() -> None:
    assert ANSWER_FED_BACK.answer_plan() == TurnPlan(forced="fed_back")
    assert ANSWER_ONLY.answer_plan() == TurnPlan(forced="repeat")
    assert OBSERVE.answer_plan() is None


@pytest.mark.parametrize(
    ("policy", "action", "forced", "backed", "turns_left", "unrun"),
    [
        (DEFAULT, "solution", None, False, 3, True),  # no code ran yet: left out, the next turn sampled
        (DEFAULT, "solution", None, True, 3, False),  # code ran, or the session has turns, or once already
        (DEFAULT, "solution", None, False, 0, False),  # no next turn to sample
        (DEFAULT, "solution", "last_turn", False, 3, False),  # an answer asked for is taken
        (DEFAULT, "solution", "repeat", False, 3, False),
        (DEFAULT, "execute", None, False, 3, False),  # only an answer is an answer
        (DEFAULT, "none", None, False, 3, False),
        (LoopPolicy(unrun_answer="off"), "solution", None, False, 3, False),
    ],
)
def test_an_unrun_answer_is_left_out(
    policy: LoopPolicy, action: str, forced: str | None, backed: bool, turns_left: int, unrun: bool
) -> None:
    facts = Facts(action, forced, turns_left, backed=backed)  # type: ignore[arg-type]
    assert (decide("after_turn", policy, facts) == LEAVE_OUT) is unrun


def test_an_answer_is_left_out_once_a_run() -> None:
    judge = Judge(LoopPolicy(), max_turns=5, follow_up=False)
    assert judge.after_turn("solution", "stop", None, 3, None) == LEAVE_OUT
    assert judge.after_turn("solution", "stop", None, 2, None) == Reaction("finish", "solution")
    follow_up = Judge(LoopPolicy(), max_turns=5, follow_up=True)  # the session's turns back it
    assert follow_up.after_turn("solution", "stop", None, 3, None) == Reaction("finish", "solution")


def test_every_rule_names_a_real_option() -> None:
    """A rule's option is a ``LoopPolicy`` field (or CodeAct's own, None): the README's table
    and the flags are generated from those fields."""
    named = {rule.option for rule in RULES} - {None}
    assert named <= set(LoopPolicy.model_fields), named - set(LoopPolicy.model_fields)
