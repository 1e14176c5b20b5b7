"""Does a forced answer agree with the output right above it? (issue 27: answers that misread)

When the loop forces an answer (after a repeat, or on the last turn), the model answers with
the output of its last execution in front of it. Small models were seen writing their prior
instead (``Monday`` under an output of ``Tuesday``, ``229`` under ``1229``). This module judges
that, run by run, from the steps a benchmark recorded: only where the output was one short
value can "disagree" be decided without reading the task, so only those count. Agreement is
the server's own test (``server.agent.policy.states_value``, which ``forced_answer: output``
applies as the run goes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.agent.policy import printed_value, states_value


def one_value_output(steps: Sequence[dict[str, Any]]) -> str | None:
    """The last execution's output before the final step, when it printed one short value."""
    for step in reversed(steps[:-1]):
        observation = step.get("observation")
        if not observation:
            continue
        return printed_value(
            observation.get("stdout") or "", observation.get("error"), bool(observation.get("timed_out"))
        )
    return None


def forced_misread(forced: str | None, answer: str | None, steps: Sequence[dict[str, Any]]) -> bool | None:
    """True: a forced answer that disagrees with the one value above it; False: it agrees;
    None: not a forced answer, an answer its own code printed (``code_answer: run`` ran the
    code the answer-only turn wrote: nothing was read), or the output above it was not one
    short value."""
    if forced is None or answer is None or not steps or steps[-1].get("observation"):
        return None
    value = one_value_output(steps)
    return None if value is None else not states_value(answer, value)
