"""``benchmarks.forced_answers``: a forced answer held against the one value printed above it."""

from __future__ import annotations

from benchmarks.forced_answers import forced_misread, one_value_output
from server.agent.policy import states_value as agrees


def step(stdout: str | None, *, error: str | None = None) -> dict:
    observation = None if stdout is None else {"stdout": stdout, "error": error, "timed_out": False}
    return {"observation": observation}


ANSWER = step(None)  # the final, forced step: no observation


def test_the_misreads_seen_in_the_quality_suite_are_caught() -> None:
    assert forced_misread("repeat", "229", [step("1229\n"), ANSWER]) is True
    assert forced_misread("repeat", "Monday", [step("Tuesday\n"), ANSWER]) is True
    assert forced_misread("last_turn", "CM CD CD C", [step("M CM D CD C\n"), ANSWER]) is True


def test_an_answer_that_states_the_value_agrees() -> None:
    assert forced_misread("repeat", "1229", [step("1229\n"), ANSWER]) is False
    assert forced_misread("repeat", "It was a Tuesday.", [step("Tuesday\n"), ANSWER]) is False
    assert agrees("40.6", "The average age is: 40.6")  # one number in the output: the number counts
    assert agrees("1,229 primes", "1229")
    assert not agrees("40.7", "The average age is: 40.6")


def test_only_forced_answers_after_one_short_clean_value_are_judged() -> None:
    assert forced_misread(None, "229", [step("1229\n"), ANSWER]) is None  # not forced
    assert forced_misread("repeat", "x", [step("a\nb\n"), ANSWER]) is None  # two lines
    assert forced_misread("repeat", "x", [step("9" * 41), ANSWER]) is None  # too long to be one value
    assert forced_misread("repeat", "x", [step("", error="NameError"), ANSWER]) is None
    assert one_value_output([step("7\n"), step(None), ANSWER]) == "7"  # the last execution, skipping none
    assert forced_misread("repeat", None, [step("7\n"), ANSWER]) is None


def test_an_answer_its_own_code_printed_is_not_a_reading() -> None:
    """The answer-only turn wrote code; it ran and printed the answer (the quality suite's
    ``fahrenheit``: ``-32.66...`` printed by the answer's code, under ``-26.79...``)."""
    ran = step("-32.66499009297363\n")
    assert forced_misread("last_turn", "-32.66499009297363", [step("-26.79698216735254\n"), ran]) is None
