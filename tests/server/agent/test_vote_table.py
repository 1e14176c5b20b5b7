"""The vote across samples (``server.agent.consensus.vote``) as a table: answers in, agreement out."""

from __future__ import annotations

import pytest

from server.agent.consensus.runner import SAMPLE_TEMPERATURE, sample_options, task_seed
from server.agent.consensus.vote import Agreement, vote
from server.agent.loop import AgentOptions
from server.agent.policy.values import agree, normalize, states_value

VOTES = [
    # answers by sample                   answer    votes voters of sample
    (["60", "61", "60"], ("60", 2, 3, 3, 0)),
    (["61", "60", "60.0"], ("60", 2, 3, 3, 1)),  # numbers within the tolerance
    (["1,229", "1229", "1228"], ("1,229", 2, 3, 3, 0)),  # thousands separators
    (["0.30000000000000004", "0.3", "0.31"], ("0.30000000000000004", 2, 3, 3, 0)),
    (["100", "100.001", "100.002"], ("100", 1, 3, 3, 0)),  # beyond the tolerance: all differ
    (["a", "b"], ("a", 1, 2, 2, 0)),  # a tie goes to sample 0
    (["a", "b", "b", "a"], ("a", 2, 4, 4, 0)),  # a tie of groups: the one holding the lowest index
    ([None, "b", "c", "c"], ("c", 2, 3, 4, 2)),  # no answer does not vote
    ([None, "7", None], ("7", 1, 1, 3, 1)),
    ([None, None], (None, 0, 0, 2, 0)),  # nobody answered: sample 0's run is the result
    (["", "  ", "x"], ("x", 1, 1, 3, 2)),  # an empty answer is no answer
    (["Paris.", "paris", " PARIS! "], ("Paris.", 3, 3, 3, 0)),  # case, space, trailing punctuation
    (["`42`", "42", "'42'"], ("`42`", 3, 3, 3, 0)),  # quotes
    (["Monday", "Tuesday", "tuesday."], ("Tuesday", 2, 3, 3, 1)),
    (["60 km", "60"], ("60 km", 1, 2, 2, 0)),  # a number with words is text
    (["x = 1", "x  =  1"], ("x = 1", 2, 2, 2, 0)),
    (["42"], ("42", 1, 1, 1, 0)),  # one sample: its answer
]


@pytest.mark.parametrize(("answers", "expected"), VOTES)
def test_vote(answers: list[str | None], expected: tuple) -> None:
    assert vote(answers) == Agreement(*expected)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("1e3", "1000", True),
        ("-5", "-5.0", True),
        ("1e-12", "0", True),  # the absolute tolerance
        ("1e-6", "0", False),
        ("3.14159", "3.14159265", True),  # within a relative 1e-6
        ("3.1416", "3.14159265", False),
        ("yes", "Yes.", True),
        ("nan", "nan", True),  # text, not a number
        ("1.5", "3/2", False),
    ],
)
def test_agree(a: str, b: str, same: bool) -> None:
    assert agree(a, b) is same
    assert agree(b, a) is same


def test_normalize() -> None:
    assert normalize('  "The  Answer"!  ') == "the answer"


def test_describe() -> None:
    assert vote(["60", "61", "60"]).describe() == "3 samples: 2 of 3 agree on 60"
    assert vote([None, None]).describe() == "2 samples: none answered"


def test_sample_options() -> None:
    greedy = AgentOptions(temperature=0.0, seed=None)
    assert sample_options(greedy, 0) is greedy
    first, second = sample_options(greedy, 1), sample_options(greedy, 2)
    assert (first.temperature, first.seed, first.waits_in_queue) == (SAMPLE_TEMPERATURE, 1, True)
    assert (second.temperature, second.seed) == (SAMPLE_TEMPERATURE, 2)
    hot = sample_options(AgentOptions(temperature=1.2, seed=40), 3)
    assert (hot.temperature, hot.seed) == (1.2, 43)
    assert sample_options(greedy, 2, base_seed=1000).seed == 1002  # a request without a seed: its task's


def test_a_request_without_a_seed_samples_from_its_own_task() -> None:
    """One fixed seed base gave every task the same random draws (sample 1 failed six tasks in
    a row that samples 0 and 2 solved): the base comes from the messages, stable per request."""
    one = [{"role": "user", "content": "What is 6 * 7?"}]
    other = [{"role": "user", "content": "What is 6 * 8?"}]
    assert task_seed(one) == task_seed([dict(m) for m in one])
    assert task_seed(one) != task_seed(other)


@pytest.mark.parametrize(
    ("answer", "value"),
    [("1,229.0", "1229"), ("0.30000000000000004", "0.3"), ("+7", "7"), (".5", "0.5"), ("Tuesday.", "tuesday")],
)
def test_the_vote_and_the_forced_answer_read_a_value_alike(answer: str, value: str) -> None:
    """One tolerance (``server.agent.policy.values``): what the forced answer takes as stating a
    value, the vote takes as agreeing with it, and the other way round."""
    assert agree(answer, value) and states_value(answer, value)
    assert not agree(answer, "8") and not states_value(answer, "8")
