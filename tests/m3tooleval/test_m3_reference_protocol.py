"""The text/JSON harness observations and ``parse_generation`` cases from the golden file."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.m3tooleval.data import load_examples, task_by_name
from benchmarks.m3tooleval.local_exec import tool_namespace
from benchmarks.m3tooleval.reference_protocol import execute_action, parse_generation, truncate
from benchmarks.m3tooleval.tools import tools_for_task

EXAMPLES = load_examples("tool_call_examples.json")


def test_harness_observations() -> None:
    """Replay every text/JSON action; one tool set (and browser) per task, in file order."""
    tool_sets: dict[str, dict[str, Any]] = {}
    for case in EXAMPLES["harness_text_json_examples"]["examples"]:
        if case["task"] not in tool_sets:
            tools = tools_for_task(task_by_name(case["task"]))
            namespace = tool_namespace(tools)
            tool_sets[case["task"]] = {tool["name"]: namespace[tool["name"]] for tool in tools}
        observation = execute_action(tool_sets[case["task"]], case["action"], case["mode"])
        assert observation == case["observation"], case


@pytest.mark.parametrize("case", EXAMPLES["parse_generation_examples"], ids=lambda case: case["generation"][:30])
def test_parse_generation(case: dict[str, Any]) -> None:
    parsed = parse_generation(case["generation"])
    assert {key: parsed.get(key) for key in case["parsed"]} == case["parsed"]


def test_truncate() -> None:
    assert truncate("x" * 2000) == "x" * 2000
    assert truncate("x" * 2001) == "x" * 2000 + "...\n[Output Truncated]"
