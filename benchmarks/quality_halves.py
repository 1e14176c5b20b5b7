"""The suite's two halves: one to tune the agent's defaults on, one held out to judge them.

Why: issue 27 tuned the defaults task by task on the whole suite and one 0.5B model; they
rose there and fell on fresh tasks with a stronger model (issue 35). A default may now
change only on what the *held-out* half says, and the held-out half is never read while
tuning. The split is fixed by a seed and made within each category (every kind of task is
on both sides, halves differ by at most one task per category), so adding tasks to one
category moves no task of another.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from benchmarks.quality_tasks import Task

#: The split's seed. Changing it re-deals the halves: every held-out figure made before is void.
SEED = 35
Half = Literal["all", "tuning", "held-out"]
HALVES: tuple[Half, ...] = ("all", "tuning", "held-out")


def split(tasks: Sequence[Task], seed: int = SEED) -> tuple[list[Task], list[Task]]:
    """(tuning, held-out), each in the suite's order.

    Within a category the tasks are dealt by name in a seeded shuffle, alternately to the
    two halves; the category's name is part of the seed, so categories deal independently.
    """
    held_out: set[str] = set()
    for category in sorted({t.category for t in tasks}):
        names = sorted(t.name for t in tasks if t.category == category)
        random.Random(f"{seed}:{category}").shuffle(names)
        held_out.update(names[1::2])
    return [t for t in tasks if t.name not in held_out], [t for t in tasks if t.name in held_out]


def half_of(tasks: Sequence[Task], half: Half, seed: int = SEED) -> list[Task]:
    """The tasks of ``half`` ("all" is every task, in order)."""
    if half == "all":
        return list(tasks)
    tuning, held_out = split(tasks, seed)
    return tuning if half == "tuning" else held_out
