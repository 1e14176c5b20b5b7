"""The oracle as a model: a responder for the scripted engine, plus a local dry run of it.

``OracleResponder`` is a ``Callable[[prompt], str]`` of the kind
``models.engine.scripted.ScriptedEngine(responder=...)`` accepts. It plays a perfect agent:
on the first turn of a task it answers ``<execute>{oracle_code}</execute>``; once the
execution output is in the prompt it answers ``<solution>{answer}</solution>``, the answer
read from that output. It knows the task only by finding the task's instruction in the
prompt, and the answer only through the observation, so it exercises the server's prompt
rendering, sandbox and observation formatting for real.

The oracle code prints ``ANSWER_MARKER`` first (nothing else is printed before the answer),
so the answer can be found in an observation however the server decorates it (an
``Observation:`` prefix, a turns-left suffix, truncation markers).

``dry_run(task)`` drives the same two turns without a server: a minimal ChatML rendering,
the tool sources and code executed in a fresh local namespace.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .data import load_tasks
from .harness import TaskRun
from .local_exec import run_cell, tool_namespace
from .oracle import oracle_code
from .scoring import score_lenient, score_reference
from .tools import tools_for_task

ANSWER_MARKER = "=== m3tooleval oracle answer ==="

_EXECUTE = re.compile(r"<execute>(.*?)</execute>", re.DOTALL)
_SOLUTION = re.compile(r"<solution>(.*?)</solution>", re.DOTALL)


def marked_oracle_code(task: dict[str, Any]) -> str:
    """The oracle code with the answer marker printed first; its last line is still the answer."""
    return f"print({ANSWER_MARKER!r})\n" + oracle_code(task)


def answer_from_observation(text: str) -> str | None:
    """The first non-empty line after the last printed marker, or None if it never printed."""
    # Only a marker that was *printed* counts: in the code it is preceded by a quote.
    hits = [
        m.end()
        for m in re.finditer(re.escape(ANSWER_MARKER), text)
        if text[m.start() - 1 : m.start()] not in {"'", '"'}
    ]
    if not hits:
        return None
    for line in text[hits[-1] :].splitlines()[1:]:
        if line.strip():
            return line.strip()
    return None


class OracleResponder:
    """Scripted-model turns for any of the given tasks, chosen from the prompt text."""

    def __init__(self, tasks: Iterable[dict[str, Any]] | None = None) -> None:
        # Longest instruction first, so one instruction that contains another cannot win.
        self._tasks = sorted(
            load_tasks() if tasks is None else tasks,
            key=lambda task: len(task["instruction"]),
            reverse=True,
        )

    def task_for(self, prompt: str) -> dict[str, Any]:
        """The task whose instruction appears in the prompt."""
        for task in self._tasks:
            if task["instruction"] in prompt:
                return task
        raise LookupError("no M3ToolEval instruction found in the prompt")

    def __call__(self, prompt: str) -> str:
        answer = answer_from_observation(prompt)
        if answer is not None:
            return f"The code printed the answer.\n<solution>{answer}</solution>"
        if marked_oracle_code(self.task_for(prompt)) in prompt:
            return "<solution>oracle code failed to print an answer</solution>"
        code = marked_oracle_code(self.task_for(prompt))
        return f"I will solve this with the tools.\n<execute>\n{code}</execute>"


# --- local dry run ---------------------------------------------------------------------------


def _chatml(messages: list[tuple[str, str]]) -> str:
    rendered = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in messages)
    return rendered + "<|im_start|>assistant\n"


@dataclass(frozen=True)
class DryRun:
    """One task driven through the responder locally."""

    name: str
    answer: str | None
    correct: bool
    observation: str


def dry_run(task: dict[str, Any], user_message: str) -> DryRun:
    """Two turns: execute the oracle's code, then answer from the observation."""
    responder = OracleResponder([task])
    messages = [("system", "You are a test double."), ("user", user_message)]
    first = responder(_chatml(messages))
    code = _EXECUTE.search(first)
    if code is None:
        return DryRun(task["name"], None, False, "")
    namespace = tool_namespace(tools_for_task(task))
    observation = f"Observation:\n{run_cell(namespace, code.group(1))}\nYou have 9 steps left."
    messages += [("assistant", first), ("user", observation)]
    solution = _SOLUTION.search(responder(_chatml(messages)))
    answer = solution.group(1) if solution else None
    return DryRun(task["name"], answer, score_reference(answer, task), observation)


def dry_run_all(tasks: Iterable[dict[str, Any]], user_message_for: Callable[[dict[str, Any]], str]) -> list[TaskRun]:
    """``dry_run`` every task, as harness records (two turns each, ending in a solution)."""
    runs = []
    for task in tasks:
        started = time.perf_counter()
        result = dry_run(task, user_message_for(task))
        runs.append(
            TaskRun(
                name=task["name"],
                domain=task["domain"],
                answer=result.answer,
                reference=result.correct,
                lenient=score_lenient(result.answer, task),
                turns=2,
                finish_reason="solution" if result.answer is not None else "no_action",
                wall_s=time.perf_counter() - started,
            )
        )
    return runs
