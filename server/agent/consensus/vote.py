"""Which sampled runs agree, and which answer wins: a pure function, tested as a table.

Only a run that ended with a ``<solution>`` votes: a run out of turns or context has no
answer, and a turn without an action is prose, which agrees with nothing by design. Two
answers agree when they say the same (``server.agent.policy.values.agree``: the tolerance
the forced answer uses too): the same text after normalizing, or the same number when each
is one, since runs that computed the same value print it differently.

The answer most runs agree on wins; a tie goes to the group holding the lowest sample
index, so sample 0 (the request's own temperature: greedy by default) decides ties, and
when no run answered at all its run is the result. Groups form in sample order, each
answer joining the first group whose first answer it agrees with, so the outcome is the
same for the same answers whatever order the runs finished in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.agent.policy.values import agree


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
