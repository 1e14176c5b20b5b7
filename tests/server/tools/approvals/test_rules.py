"""Which calls ask (``server.tools.approvals.rules``), as tables: the operator's rule with its
defaults from ``readOnlyHint``, and a request that may only add approvals."""

from __future__ import annotations

import pytest

from server.mcp.config import McpConfigError, parse
from server.tools.approvals.rules import Narrowing, RuleError, needs_approval, parse_mcp_tools, parse_rule

FILTER = {"always": ["read_secret"], "never": {"tool_names": ["write_log"]}}


@pytest.mark.parametrize(
    ("config", "tool", "read_only", "asks"),
    [
        (None, "search", True, False),  # no key: a read-only tool runs unasked
        (None, "send", False, True),  # no key: anything else asks (safe by default)
        ("always", "search", True, True),
        ("never", "send", False, False),
        (FILTER, "read_secret", True, True),  # named always: asks though read-only
        (FILTER, "write_log", False, False),  # named never: unasked though it writes
        (FILTER, "send", False, True),  # named by neither: the default
        (FILTER, "search", True, False),
        ({"never": {"read_only": True}}, "search", True, False),
        ({"always": {"read_only": True}}, "search", True, True),
    ],
)
def test_the_operators_rule(config: object, tool: str, read_only: bool, asks: bool) -> None:
    rule = None if config is None else parse_rule(config)
    assert needs_approval(rule, None, tool, read_only) is asks


@pytest.mark.parametrize(
    ("config", "request_rule", "tool", "read_only", "asks"),
    [
        (None, "never", "send", False, True),  # a request cannot loosen the default...
        ("always", "never", "search", True, True),  # ...nor the operator's always
        ("always", {"never": ["search"]}, "search", True, True),
        ("never", "always", "send", False, True),  # it may tighten
        (None, "always", "search", True, True),
        (None, {"always": ["search"]}, "search", True, True),
        (None, {"always": ["other"]}, "search", True, False),
        ("never", None, "send", False, False),
    ],
)
def test_a_request_only_tightens(config: object, request_rule: object, tool: str, read_only: bool, asks: bool) -> None:
    rule = None if config is None else parse_rule(config)
    narrowing = Narrowing(None, None if request_rule is None else parse_rule(request_rule))
    assert needs_approval(rule, narrowing, tool, read_only) is asks


def test_the_config_file_takes_the_key_and_names_a_mistake() -> None:
    servers = parse({"mcpServers": {"a": {"command": "x", "require_approval": FILTER}, "b": {"url": "http://h"}}})
    assert servers[0].require_approval == parse_rule(FILTER)
    assert servers[1].require_approval is None
    for bad, where in [
        ("sometimes", "mcpServers.a.require_approval"),
        ({"always": "x"}, "mcpServers.a.require_approval.always"),
        ({"maybe": []}, "mcpServers.a.require_approval"),
        ({"never": {"tool_names": [1]}}, "mcpServers.a.require_approval.never"),
    ]:
        with pytest.raises(McpConfigError, match=f"^{where.replace('.', '[.]')}: "):
            parse({"mcpServers": {"a": {"command": "x", "require_approval": bad}}})


def test_request_mcp_tools_name_configured_servers_only() -> None:
    chosen = parse_mcp_tools(
        [(1, {"type": "mcp", "server_label": "a", "allowed_tools": ["t"], "require_approval": "always"})], ["a", "b"]
    )
    assert chosen["a"].allows("t", False) and not chosen["a"].allows("u", True)
    assert needs_approval(None, chosen["a"], "t", True)
    for tool, where in [
        ({"server_label": "c"}, "tools[1].server_label"),
        ({"server_label": "a", "server_url": "http://x"}, "tools[1].server_url"),
        ({"server_label": "a", "allowed_tools": "t"}, "tools[1].allowed_tools"),
        ({"server_label": "a", "require_approval": "often"}, "tools[1].require_approval"),
    ]:
        with pytest.raises(RuleError) as refused:
            parse_mcp_tools([(1, {"type": "mcp", **tool})], ["a", "b"])
        assert refused.value.where == where
