"""Does a forced answer agree with the output right above it? (issue 27: answers that misread)

When the loop forces an answer (after a repeat, or on the last turn), the model answers with
the output of its last execution in front of it. Small models were seen writing their prior
instead (``Monday`` under an output of ``Tuesday``, ``229`` under ``1229``). This module judges
that, run by run, from the steps a benchmark recorded: only where the output was one short
value can "disagree" be decided without reading the task, so only those count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from benchmarks.quality_tasks import numbers_in

#: An output this short and on one line is one value the answer can be held against.
ONE_VALUE_CHARS = 40
TOLERANCE = 1e-6


def one_value_output(steps: Sequence[dict[str, Any]]) -> str | None:
    """The last execution's output before the final step, when it printed one short value."""
    for step in reversed(steps[:-1]):
        observation = step.get("observation")
        if not observation:
            continue
        value = (observation.get("stdout") or "").strip()
        clean = observation.get("error") is None and not observation.get("timed_out")
        return value if clean and value and "\n" not in value and len(value) <= ONE_VALUE_CHARS else None
    return None


def _norm(text: str) -> str:
    return text.strip().strip("`'\".").casefold()


def agrees(answer: str, value: str) -> bool:
    """Whether ``answer`` states ``value``: the same number (within a tolerance), else the text."""
    wanted = numbers_in(value)
    if len(wanted) == 1:  # "1229", or "The average age is: 40.6": the number is the value
        return any(math.isclose(n, wanted[0], rel_tol=TOLERANCE, abs_tol=TOLERANCE) for n in numbers_in(answer))
    return _norm(value) in _norm(answer)


def forced_misread(forced: str | None, answer: str | None, steps: Sequence[dict[str, Any]]) -> bool | None:
    """True: a forced answer that disagrees with the one value above it; False: it agrees;
    None: not a forced answer, or the output above it was not one short value."""
    if forced is None or answer is None or not steps:
        return None
    value = one_value_output(steps)
    return None if value is None else not agrees(answer, value)
