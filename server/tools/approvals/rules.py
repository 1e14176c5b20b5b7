"""Which tool calls need approval: the operator's rule per server, narrowed per request.

Why two layers: the operator knows what a server's tools do and writes it in
``--mcp-config``; a request may only add caution (OpenAI's ``mcp`` tool on ``/v1/responses``
with ``allowed_tools`` and ``require_approval``), never take it away, because the request may
come from anyone with an API key while the config is the operator's word.

The shape is OpenAI's ``require_approval``: ``"always"``, ``"never"``, or a filter
``{"always": ..., "never": ...}`` whose parts are a list of tool names (the short form) or
``{"tool_names": [...], "read_only": bool}`` (OpenAI's form; ``read_only`` matches the tools
whose MCP annotations say ``readOnlyHint``). A tool no part names falls to the default: a
server without the key asks for every tool whose annotations do not say ``readOnlyHint:
true``, so a server that declares nothing is asked about everything (safe by default).

Everything here is pure: a `Rule` is parsed once, and `needs_approval` is a table the tests
read as one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal


class RuleError(ValueError):
    """A ``require_approval`` or ``allowed_tools`` value that is not in the accepted shape;
    ``where`` names the field."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass(frozen=True)
class Match:
    """Some tools of one server: by name, and/or all read-only ones."""

    tool_names: frozenset[str] = frozenset()
    read_only: bool | None = None

    def covers(self, tool: str, read_only: bool) -> bool:
        if tool in self.tool_names:
            return True
        return self.read_only is not None and self.read_only == read_only


@dataclass(frozen=True)
class Rule:
    """One ``require_approval`` value: a mode, or the tools always / never asked about."""

    mode: Literal["always", "never", "filter"] = "filter"
    always: Match | None = None
    never: Match | None = None

    def decides(self, tool: str, read_only: bool) -> bool | None:
        """True: ask; False: do not ask; None: this rule says nothing about the tool."""
        if self.mode != "filter":
            return self.mode == "always"
        if self.always is not None and self.always.covers(tool, read_only):
            return True
        if self.never is not None and self.never.covers(tool, read_only):
            return False
        return None


def _match(value: Any, where: str) -> Match:
    if isinstance(value, list):
        value = {"tool_names": value}
    if not isinstance(value, Mapping):
        raise RuleError("must be a list of tool names or an object with tool_names and/or read_only", where)
    unknown = set(value) - {"tool_names", "read_only"}
    if unknown:
        raise RuleError(f"unknown field {sorted(unknown)[0]!r} (tool_names, read_only)", where)
    names = value.get("tool_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RuleError("tool_names must be a list of strings", where)
    read_only = value.get("read_only")
    if read_only is not None and not isinstance(read_only, bool):
        raise RuleError("read_only must be true or false", where)
    return Match(frozenset(names), read_only)


def parse_rule(value: Any, where: str = "require_approval") -> Rule:
    """A ``require_approval`` value as a `Rule`; `RuleError` naming `where` otherwise."""
    if value in ("always", "never"):
        return Rule(value)
    if not isinstance(value, Mapping):
        raise RuleError('must be "always", "never" or {"always": [...], "never": [...]}', where)
    unknown = set(value) - {"always", "never"}
    if unknown:
        raise RuleError(f"unknown field {sorted(unknown)[0]!r} (always, never)", where)
    always = _match(value["always"], f"{where}.always") if "always" in value else None
    never = _match(value["never"], f"{where}.never") if "never" in value else None
    return Rule("filter", always, never)


def configured(rule: Rule | None, tool: str, read_only: bool) -> bool:
    """Whether the operator's rule asks about `tool`: the rule's word, else the default (ask
    unless the tool's annotations say it only reads)."""
    decided = rule.decides(tool, read_only) if rule is not None else None
    return (not read_only) if decided is None else decided


@dataclass(frozen=True)
class Narrowing:
    """What one request's ``mcp`` tool asks of one configured server: only some tools
    (``allowed``: None for all), and more approvals (``rule``: None for none more)."""

    allowed: Match | None = None
    rule: Rule | None = None

    def allows(self, tool: str, read_only: bool) -> bool:
        return self.allowed is None or self.allowed.covers(tool, read_only)


def needs_approval(config: Rule | None, narrowing: Narrowing | None, tool: str, read_only: bool) -> bool:
    """The operator's answer, and yes whenever the request asks for more: a request's
    ``never`` (or a filter that leaves a tool out) cannot turn an operator's yes into no."""
    if configured(config, tool, read_only):
        return True
    if narrowing is None or narrowing.rule is None:
        return False
    return narrowing.rule.decides(tool, read_only) is True


def parse_mcp_tools(tools: Sequence[tuple[int, Mapping[str, Any]]], servers: Sequence[str]) -> dict[str, Narrowing]:
    """The request's OpenAI ``mcp`` tools (each with its index in ``tools``) by
    ``server_label``, which must name a configured server; a `RuleError` naming the field
    otherwise. This server calls only the servers its operator configured, so a
    ``server_url``, ``connector_id`` or ``headers`` is refused rather than quietly ignored."""
    chosen: dict[str, Narrowing] = {}
    for index, tool in tools:
        where = f"tools[{index}]"
        label = tool.get("server_label")
        if not isinstance(label, str) or label not in servers:
            raise RuleError(
                f"server_label must name a server of this server's --mcp-config ({', '.join(servers) or 'none'})",
                f"{where}.server_label",
            )
        if label in chosen:
            raise RuleError(f"the server {label!r} is named twice", f"{where}.server_label")
        for field_name in ("server_url", "connector_id", "headers", "authorization"):
            if tool.get(field_name):
                raise RuleError(
                    "is not supported: this server calls only the MCP servers its operator configured",
                    f"{where}.{field_name}",
                )
        allowed = tool.get("allowed_tools")
        allowed_match = None if allowed is None else _match(allowed, f"{where}.allowed_tools")
        required = tool.get("require_approval")
        rule = None if required is None else parse_rule(required, f"{where}.require_approval")
        chosen[label] = Narrowing(allowed_match, rule)
    return chosen
