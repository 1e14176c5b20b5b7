"""Every golden tool call in tool_call_examples.json, through the tools' shipped source.

Each case builds a fresh namespace from nothing but the tools' ``source`` text, exactly as
the agent's sandbox will, then compares ``str(result)`` (and ``repr``) with what upstream
returned, or the exception class (and message) upstream raised.
"""

from __future__ import annotations

import ast
from typing import Any

import pytest

from benchmarks.m3tooleval.data import load_examples, load_tasks
from benchmarks.m3tooleval.local_exec import tool_namespace
from benchmarks.m3tooleval.tools import DOMAINS, domain_sources, tools_for_task

EXAMPLES = load_examples("tool_call_examples.json")

STATELESS = [
    pytest.param(domain, case, id=f"{domain}-{index}-{case['tool']}")
    for domain, cases in EXAMPLES["domains"].items()
    if isinstance(cases, list)
    for index, case in enumerate(cases)
]


def _domain_namespace(domain: str) -> dict[str, Any]:
    sources = domain_sources(domain)
    return tool_namespace({"name": name, "source": src} for name, src in sources.items())


def _check_call(namespace: dict[str, Any], case: dict[str, Any], *, message: bool = True) -> None:
    args = ast.literal_eval(case["args_repr"])
    func = namespace[case["tool"]]
    if "raises" in case:
        with pytest.raises(Exception) as info:
            func(*args)
        assert type(info.value).__name__ == case["raises"]
        if message and "error_message" in case:
            assert str(info.value) == case["error_message"]
        return
    result = func(*args)
    assert type(result).__name__ == case["returns_type"]
    assert str(result) == case["returns_str"]
    assert repr(result) == case["returns_repr"]


@pytest.mark.parametrize(("domain", "case"), STATELESS)
def test_stateless_call(domain: str, case: dict[str, Any]) -> None:
    _check_call(_domain_namespace(domain), case)


def test_browser_session_sequence() -> None:
    """The 44-step session shares one browser; check output and state after every step."""
    namespace = _domain_namespace("web_browsing")
    for step, case in enumerate(EXAMPLES["domains"]["web_browsing"]["sequence"]):
        try:
            # Upstream's browser was a class, so its TypeError names ``WebBrowser.view()``
            # with a ``self`` argument; only the exception class is part of the contract.
            _check_call(namespace, case, message=False)
        except AssertionError as exc:
            raise AssertionError(f"step {step} {case['tool']}{case['args_repr']}") from exc
        state = namespace["_m3_web_state"]
        observed = {key: state[key] for key in case["state_after"]}
        assert observed == case["state_after"], f"state after step {step}"


def test_tools_for_task_matches_tasks_json() -> None:
    for task in load_tasks():
        tools = tools_for_task(task)
        assert [(t["name"], t["signature"], t["description"]) for t in tools] == [
            (t["name"], t["signature"], t["description"]) for t in task["tools"]
        ]
        namespace = tool_namespace(tools)
        for tool in tools:
            assert callable(namespace[tool["name"]])


@pytest.mark.parametrize("domain", DOMAINS)
def test_each_source_is_self_contained(domain: str) -> None:
    """Any one tool source, alone in an empty namespace, defines a working tool."""
    for name, source in domain_sources(domain).items():
        namespace = tool_namespace([{"name": name, "source": source}])
        assert callable(namespace[name])


def test_web_tools_share_one_browser_whatever_the_order() -> None:
    sources = domain_sources("web_browsing")
    order = ["view", "click_url", "scroll_down", "go_to_previous_page", "scroll_up"]
    namespace = tool_namespace({"name": n, "source": sources[n]} for n in order)
    assert namespace["click_url"]("/team").startswith("[Opened page: /team]")
    assert "[Web Page Name: /team]" in namespace["view"]()
    assert namespace["go_to_previous_page"]().startswith("[Opened page: /]")


def test_fresh_namespace_gives_fresh_browser() -> None:
    first = _domain_namespace("web_browsing")
    first["click_url"]("/team")
    second = _domain_namespace("web_browsing")
    assert second["_m3_web_state"]["current_page"] == "/"
    assert second["go_to_previous_page"]() == "[No previous page.]"


def test_travel_rows_are_copies() -> None:
    namespace = _domain_namespace("travel_itinerary_planning")
    namespace["find_flights"]("E", "A", "2023-12-25")[0]["price"] = 0
    namespace["book_hotel"]("A")[0]["preferences"].clear()
    assert namespace["find_flights"]("E", "A", "2023-12-25")[0]["price"] == 450
    assert namespace["book_hotel"]("A")[0]["preferences"] == ["wifi", "pool"]


def test_reverse_string_rejects_advertised_keyword() -> None:
    namespace = _domain_namespace("message_decoder")
    with pytest.raises(TypeError, match="unexpected keyword argument 'string'"):
        namespace["reverse_string"](string="x")


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_source_defines_its_tool_with_def(domain: str) -> None:
    """A plain ``def <name>`` at top level: what a sandbox may reasonably look for."""
    for name, source in domain_sources(domain).items():
        defined = {node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}
        assert name in defined, name
