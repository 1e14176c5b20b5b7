"""The oracle: a scripted correct agent, used to check the harness itself.

``oracle_code(task)`` is Python that calls the task's tools and prints the final answer on
its last stdout line. In oracle mode the harness hands it to a scripted model whose first
turn is ``<execute>{code}</execute>`` and whose second turn is ``<solution>{answer}</solution>``
with the answer read from the observation; if the whole chain (tool sources, sandbox,
observation, answer extraction, judge) is right, that scores 82/82.

``self_check()`` runs the same code without a server: every task's tool sources and then its
oracle code in one fresh namespace, last stdout line scored by the reference judge. Run it
with ``python -m benchmarks.m3tooleval.oracle``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .data import load_tasks
from .local_exec import last_line, run_cell, tool_namespace
from .oracle_solutions import simple_domain_code
from .oracle_web import web_code
from .scoring import score_reference
from .tools import tools_for_task


def oracle_code(task: dict[str, Any]) -> str:
    """Code that solves ``task`` with its tools and prints the answer as its last line."""
    if task["domain"] == "web_browsing":
        return web_code(task)
    return simple_domain_code(task)


def oracle_answer(observation: str) -> str:
    """What the scripted model puts in ``<solution>``: the observation's last line."""
    return last_line(observation).strip()


@dataclass(frozen=True)
class OracleResult:
    """One task's local oracle run."""

    name: str
    answer: str
    correct: bool
    output: str


def run_locally(task: dict[str, Any]) -> OracleResult:
    """Exec the task's tool sources, then its oracle code, in one fresh namespace."""
    namespace = tool_namespace(tools_for_task(task))
    output = run_cell(namespace, oracle_code(task))
    answer = oracle_answer(output)
    return OracleResult(task["name"], answer, score_reference(answer, task), output)


def self_check(tasks: Iterable[dict[str, Any]] | None = None) -> list[OracleResult]:
    """Run every task's oracle locally; all should be judged correct."""
    return [run_locally(task) for task in (load_tasks() if tasks is None else tasks)]


def main() -> int:
    """Print failures, then ``oracle self-check N/M``; exit 1 unless all pass."""
    results = self_check()
    for result in results:
        if not result.correct:
            print(f"FAIL {result.name}: answered {result.answer!r}\n{result.output}")
    passed = sum(result.correct for result in results)
    print(f"oracle self-check {passed}/{len(results)}")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
