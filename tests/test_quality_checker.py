"""The agent-quality suite's own checker: right answers pass, copied or wrong ones fail."""

from __future__ import annotations

import pytest

from benchmarks.quality_tasks import Task, build_tasks, check_answer, check_file

TASKS = {task.name: task for task in build_tasks()}


def test_the_suite_is_large_and_covers_every_category() -> None:
    assert len(TASKS) >= 40
    categories = {t.category for t in TASKS.values()}
    assert {"number theory", "dates", "strings", "hashing", "tables", "statistics", "units", "files"} <= categories


@pytest.mark.parametrize("task", [t for t in TASKS.values() if t.kind != "file"], ids=lambda t: t.name)
def test_the_expected_answer_passes_bare_and_in_a_sentence(task: Task) -> None:
    expected = ", ".join(map(str, task.expected)) if task.kind == "list" else str(task.expected)
    assert check_answer(task, expected)
    assert check_answer(task, f"The answer is {expected}.")


@pytest.mark.parametrize(
    ("name", "answer", "ok"),
    [
        ("pow_mod", "907", True),
        ("pow_mod", "42", False),  # the old prompt's example answer
        ("pow_mod", "The result is 907", True),
        ("pow_mod", "result", False),  # a variable name instead of its value
        ("pow_mod", "2**100 % 997 = 907", True),
        ("pow_mod", "print((2**100) % 997)", False),
        ("lcm_1_20", "232,792,560", True),
        ("fahrenheit", "37.0", True),
        ("fahrenheit", "37.5", False),
        ("weekday_leap", "tuesday", True),
        ("weekday_leap", "It was a 'Tuesday'.", True),
        ("weekday_leap", "Monday", False),
        ("weekday_leap", "29 February 2000 is a Tuesday.", True),
        ("weekday_leap", "Not a Tuesday but a Monday, and that is a long sentence about calendars here.", False),
        ("caesar", "hello world", False),
        ("md5", "The MD5 digest is: 'not it'", False),
        ("sort_words", "apple, banana, cherry, date, fig, pear", True),
        ("sort_words", "apple, banana, date, cherry, fig, pear", False),
        ("csv_top_region", "North", True),
        ("csv_top_region", None, False),
    ],
)
def test_checker_is_strict_but_tolerant(name: str, answer: str | None, ok: bool) -> None:
    assert check_answer(TASKS[name], answer) is ok


def test_file_tasks_check_the_contents() -> None:
    squares = TASKS["file_squares"]
    assert check_file(squares, "\n".join(str(n * n) for n in range(1, 21)) + "\n")
    assert not check_file(squares, "1\n4\n9\n")
    assert not check_file(squares, None)
    assert check_file(TASKS["file_primes_json"], "[2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47]")
    assert not check_file(TASKS["file_primes_json"], "not json")
    assert check_file(TASKS["file_totals_csv"], "region,revenue\nNorth,82.0\nSouth,65.0\nEast,56.0\n")


def test_every_policy_arm_sets_real_loop_options() -> None:
    """An arm of ``benchmarks.agent_quality`` is a set of request fields: each must be a loop
    option, so that a removed option cannot leave an arm measuring nothing (besides, an arm may
    send a client system message: ``SYSTEM_MESSAGE``)."""
    from benchmarks.agent_quality import ARMS, SYSTEM_MESSAGE
    from server.agent.options import LoopPolicy

    for arm, extras in ARMS.items():
        if extras is not None:
            options = {k: v for k, v in extras.items() if k != SYSTEM_MESSAGE}
            assert set(options) <= set(LoopPolicy.model_fields), arm
            LoopPolicy(**options)  # valid values
