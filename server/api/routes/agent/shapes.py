"""The JSON parts of an agent answer: one step's documented shape, and how each way the loop
can end maps to OpenAI's ``finish_reason``. One place, so the whole answer, the stream's
``step`` chunks and a session's ``steps`` cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from server.agent.steps import Step

# How each way the loop can end maps to OpenAI's finish_reason vocabulary.
OPENAI_FINISH_OF_AGENT = {
    "solution": "stop",
    "no_action": "stop",
    "max_turns": "length",
    "length": "length",
    "error": "stop",
    "cancelled": "stop",
}


def step_payload(step: Step) -> dict[str, Any]:
    """The documented JSON shape of one step."""
    action: dict[str, Any] = {"type": step.action.type}
    if step.action.type == "execute":
        action["code"] = step.action.code
    elif step.action.type == "solution":
        action["answer"] = step.action.answer
        if step.action.code is not None:
            action["code"] = step.action.code  # the code whose printed output is the answer
    observation = None if step.observation is None else step.observation.payload()
    return {
        "index": step.index,
        "thought": step.thought,
        "action": action,
        "observation": observation,
        "tokens": {  # the turn's (``usage`` has the execution's cost too)
            "prompt": step.turn_usage.prompt_tokens,
            "completion": step.turn_usage.completion_tokens,
            "cached_prompt": step.turn_usage.cached_prompt_tokens,
        },
        "usage": step.usage.payload(),
        "generation_finish": step.generation_finish,
        "forced": step.forced,
        "repeated_code": step.repeated_code,
        "resampled": step.resampled,
        "left_out": step.left_out,
        "overruled_answer": step.overruled_answer,
        "phases": step.phases,
        "timings": {k: round(v, 6) for k, v in step.timings.items()},
    }
