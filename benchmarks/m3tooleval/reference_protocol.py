"""Upstream's text/JSON action protocol, re-implemented from TOOLS_SPEC.md section 7.

Our harness drives CodeAct (code actions through ``/v1/agent``), so nothing here is on the
benchmark's main path. It exists so that the shared golden observations for the text and
JSON modes, and upstream's ``Answer:``/``Action:`` parser, can be checked against the same
tool sources, and so that a later text/JSON comparison run has a faithful starting point.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

Mode = Literal["text_as_action", "json_as_action"]

MAX_OBSERVATION_CHARS = 2000
TRUNCATION_MARKER = "...\n[Output Truncated]"

INVALID_BOTH = "Invalid generation. Your output should contain either 'Action:' or 'Answer:', but not both."
INVALID_NEITHER = "Invalid generation. Your output should contain either 'Action:' or 'Answer:'"
EXTRA_REMINDER = "You have output more than one {kind}. Only the first {kind} will be used."
INVALID_JSON = (
    "Invalid action. You should output a JSON object with the following fields: 'tool' "
    "(the name of the tool), 'args' (a list of arguments to the tool). Error: {error}"
)
INVALID_TEXT = (
    "Invalid action. You should output the tool name followed by its arguments, delimited by commas. Error: {error}"
)


def truncate(text: str) -> str:
    """Cut an observation at 2000 characters and mark the cut, as upstream did."""
    if len(text) <= MAX_OBSERVATION_CHARS:
        return text
    return text[:MAX_OBSERVATION_CHARS] + TRUNCATION_MARKER


def parse_generation(generation: str) -> dict[str, Any]:
    """Classify one model turn as an answer, an action or invalid (spec 7.1, step 2)."""
    has_answer = "Answer:" in generation
    has_action = "Action:" in generation
    if has_answer and has_action:
        return {"type": "invalid", "content": INVALID_BOTH}
    if not has_answer and not has_action:
        return {"type": "invalid", "content": INVALID_NEITHER}
    marker, kind = ("Answer:", "answer") if has_answer else ("Action:", "action")
    pieces = generation.split(marker)
    content = pieces[1].strip() if kind == "answer" else pieces[1].lstrip().split("End Action")[0]
    extra = EXTRA_REMINDER.format(kind=kind) if len(pieces) > 2 else None
    return {"type": kind, "content": content, "extra_info": extra}


def _convert_text_argument(piece: str) -> Any:
    for convert in (int, float):
        try:
            return convert(piece)
        except ValueError:
            continue
    return piece


def execute_action(tools: Mapping[str, Callable[..., Any]], action: str, mode: Mode) -> str:
    """Run one text- or JSON-mode action against the task's ``tools``; the observation."""
    if mode == "json_as_action":
        try:
            parsed = json.loads(action)
            name, args = parsed["tool"], parsed["args"]
        except Exception as exc:  # upstream reports any parse problem to the model
            return INVALID_JSON.format(error=exc)
        if not isinstance(args, list):
            args = [args]
    else:
        try:
            name, *raw = action.split(",")
            name = name.strip()
            args = [_convert_text_argument(piece.strip()) for piece in raw]
        except Exception as exc:
            return INVALID_TEXT.format(error=exc)
    tool = tools.get(name)
    if tool is None:
        return f"Cound not find tool with name {name}"
    call_args = tuple(args)
    try:
        result = tool(*call_args)
    except Exception:
        return (
            f"Failed to execute tool {name} with args {call_args!r}. "
            "Did you try to invoke more than one tool at a time?"
        )
    return truncate(str(result))
