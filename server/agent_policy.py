"""How the loop copes with the habits of small models, so that a run ends with an answer.

Small models at temperature 0 answer a task's code with the same code again, turn after
turn, long after its output showed the answer; and asked for nothing in particular at the
last turn, they run code once more and the run ends with no answer at all. The loop
therefore has a policy, each part a named option so that its effect can be measured on
and off (``benchmarks/agent_quality.py``, figures in ``benchmarks/RESULTS.md``):

* ``on_repeat``: what to do when the model runs code it already ran in this request and
  gets the same output again (same code by syntax tree, so comments and spacing do not
  matter; same output, so code whose result changed, e.g. after the files or random state
  changed, is not a repeat).
  ``"answer"`` turns that very turn into a solution-only turn: the model's thinking is
  kept, ``<solution>`` is opened for it and only the answer's text is generated, so the
  repeat costs no further turn. ``"note"`` runs it and tells the model in the observation
  that it repeated itself. ``"off"`` does nothing.
* ``final_answer``: the last turn of the budget may only be a ``<solution>`` (when the
  budget allows more than one turn), so no run ends at ``max_turns`` with nothing.
* ``prompt_style``: ``"mint"`` frames messages as CodeActAgent's training trajectories did
  (``Task:``, ``Observation:``, steps and solution chances left, the last step reserved for
  a solution); ``"chat"`` as the reference chat demo did (``Execution Output:``).

A solution the policy forced is flagged (``Step.forced``, ``AgentDone.forced_answer``) with
why: ``"repeat"`` or ``"last_turn"``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Literal

RepeatPolicy = Literal["answer", "note", "off"]
PromptStyle = Literal["mint", "chat"]
ForcedReason = Literal["repeat", "last_turn"]

#: How a forced answer is explained to people (transcript, terminal, web page).
FORCED_NOTES: dict[str, str] = {
    "repeat": "answer forced: the model repeated code whose output it had already seen",
    "last_turn": "answer forced: the turn limit was reached",
}


@dataclass(frozen=True)
class LoopPolicy:
    """The policy of one request (defaults are what measured best; see the module doc)."""

    on_repeat: RepeatPolicy = "answer"
    final_answer: bool = True
    prompt_style: PromptStyle = "mint"

    def forces_last_turn(self, turn: int, max_turns: int) -> bool:
        """Whether ``turn`` (0-based) may only answer: the last of a budget of two or more.

        A budget of one turn is left free: a caller who allows a single action asked for
        one execution or one answer, and forcing would forbid running code at all.
        """
        return self.final_answer and max_turns > 1 and turn == max_turns - 1


def code_key(code: str) -> str:
    """What makes two pieces of code "the same": their syntax tree, else their stripped lines."""
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError):
        return "\n".join(line.rstrip() for line in code.strip().splitlines())


class RepeatTracker:
    """Remembers what each distinct piece of code printed in this request."""

    def __init__(self) -> None:
        self._outputs: dict[str, str] = {}

    def is_repeat(self, code: str, output: str) -> bool:
        """Record ``code``'s output; True when the same code already gave the same output."""
        key = code_key(code)
        repeated = self._outputs.get(key) == output
        self._outputs[key] = output
        return repeated
