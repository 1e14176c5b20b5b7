"""Which sampled runs agree, and which answer wins: a pure function, tested as a table.

Only a run that ended with a ``<solution>`` votes: a run out of turns or context has no
answer, and a turn without an action is prose, which agrees with nothing by design. Two
answers agree when they say the same after normalizing (surrounding space and quotes,
case, trailing punctuation, runs of spaces); answers that are each one number agree within
a tolerance (``1229`` and ``1,229.0``, ``0.1 + 0.2`` printed as ``0.30000000000000004`` and
``0.3``), since runs that computed the same value print it differently.

The answer most runs agree on wins; a tie goes to the group holding the lowest sample
index, so sample 0 (the request's own temperature: greedy by default) decides ties, and
when no run answered at all its run is the result. Groups form in sample order, each
answer joining the first group whose first answer it agrees with, so the outcome is the
same for the same answers whatever order the runs finished in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

REL_TOLERANCE = 1e-6
ABS_TOLERANCE = 1e-9
_QUOTES = "`'\""
_TRAILING = ".!;,:"
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:e[-+]?\d+)?")


@dataclass(frozen=True)
class Agreement:
    """The vote: the winning ``answer`` (None: no run answered), its ``votes``, how many runs
    answered (``voters``) of how many ran (``of``), and the winning run (``sample``)."""

    answer: str | None
    votes: int
    voters: int
    of: int
    sample: int

    def to_json(self) -> dict[str, Any]:
        return {"answer": self.answer, "votes": self.votes, "voters": self.voters, "of": self.of, "sample": self.sample}

    def describe(self) -> str:
        """One line for people: ``3 samples: 2 of 3 agree on 60``."""
        if self.answer is None:
            return f"{self.of} samples: none answered"
        return f"{self.of} samples: {self.votes} of {self.of} agree on {self.answer}"


def normalize(answer: str) -> str:
    """An answer as it is compared: no surrounding space or quotes, one case, no trailing
    punctuation, single spaces."""
    text = " ".join(answer.split()).casefold()
    previous = None
    while text != previous:
        previous = text
        text = text.strip().strip(_QUOTES).rstrip(_TRAILING)
    return text


def as_number(text: str) -> float | None:
    """The number a normalized answer is, when it is exactly one (thousands separators allowed)."""
    if not text or not any(c.isdigit() for c in text) or not _NUMBER.fullmatch(text):
        return None
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def agree(a: str, b: str) -> bool:
    """Whether two answers say the same (numbers within ``REL_TOLERANCE``/``ABS_TOLERANCE``)."""
    a, b = normalize(a), normalize(b)
    x, y = as_number(a), as_number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)
    return a == b


def vote(answers: Sequence[str | None]) -> Agreement:
    """The agreement of runs whose answers are ``answers`` (by sample index; None: no answer)."""
    groups: list[list[int]] = []
    for index, answer in enumerate(answers):
        if answer is None or not answer.strip():
            continue
        for group in groups:
            if agree(answers[group[0]] or "", answer):
                group.append(index)
                break
        else:
            groups.append([index])
    voters = sum(len(group) for group in groups)
    if not groups:
        return Agreement(None, 0, 0, len(answers), 0)
    best = max(groups, key=lambda group: (len(group), -group[0]))
    winner = best[0]
    return Agreement((answers[winner] or "").strip(), len(best), voters, len(answers), winner)
