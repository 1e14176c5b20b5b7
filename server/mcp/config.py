"""``--mcp-config FILE``: the common ``mcpServers`` JSON shape, checked before anything starts.

The shape clients such as Claude Desktop and Cursor use, so an existing file works as is::

    {"mcpServers": {
        "files":   {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/data"],
                    "env": {"DEBUG": "1"}, "cwd": "/srv"},
        "weather": {"url": "http://127.0.0.1:9000/mcp", "headers": {"Authorization": "Bearer ..."}}
    }}

An entry with ``command`` is a stdio server (a process the MCP client starts); one with
``url`` is a Streamable HTTP server. Either may say which of its tools need a person's approval
before agent code may call them: ``"require_approval": "always" | "never" | {"always": [...],
"never": [...]}`` (OpenAI's shape, ``server.tools.approvals.rules``); without it, every tool whose
MCP annotations do not say ``readOnlyHint: true`` asks. A mistake is a `McpConfigError` naming the server and
the field, raised at start-up: a typo must not quietly leave the agent without its tools.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.tools.approvals.rules import Rule, RuleError, parse_rule

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class McpConfigError(ValueError):
    """The MCP config file is unreadable or not in the ``mcpServers`` shape."""


@dataclass(frozen=True)
class StdioServer:
    name: str
    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    #: Which tools ask before a call (None: those not annotated read-only).
    require_approval: Rule | None = None


@dataclass(frozen=True)
class HttpServer:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    require_approval: Rule | None = None


ServerConfig = StdioServer | HttpServer


def _strings(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise McpConfigError(f"{where} must be an object of strings")
    return dict(value)


def parse(data: Any) -> list[ServerConfig]:
    """The servers of a decoded config file, in file order."""
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError('the MCP config must be a JSON object with an "mcpServers" object')
    parsed: list[ServerConfig] = []
    for name, entry in servers.items():
        where = f"mcpServers.{name}"
        if not NAME.match(name):
            raise McpConfigError(
                f"{where}: a server name must start with a letter and hold only letters, "
                "digits, '_' and '-' (at most 64)"
            )
        if not isinstance(entry, dict):
            raise McpConfigError(f"{where} must be an object")
        rule = None
        if "require_approval" in entry:
            try:
                rule = parse_rule(entry["require_approval"], f"{where}.require_approval")
            except RuleError as exc:
                raise McpConfigError(str(exc)) from exc
        if ("command" in entry) == ("url" in entry):
            raise McpConfigError(f"{where} needs exactly one of command (stdio) or url (Streamable HTTP)")
        if "command" in entry:
            command, args = entry["command"], entry.get("args", [])
            if not isinstance(command, str) or not command:
                raise McpConfigError(f"{where}.command must be a non-empty string")
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                raise McpConfigError(f"{where}.args must be a list of strings")
            cwd = entry.get("cwd")
            if cwd is not None and not isinstance(cwd, str):
                raise McpConfigError(f"{where}.cwd must be a string")
            env = _strings(entry.get("env"), f"{where}.env")
            parsed.append(StdioServer(name, command, tuple(args), env, cwd, rule))
        else:
            url = entry["url"]
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise McpConfigError(f"{where}.url must be an http:// or https:// URL")
            parsed.append(HttpServer(name, url, _strings(entry.get("headers"), f"{where}.headers"), rule))
    return parsed


def load(path: Path) -> list[ServerConfig]:
    """Read and check a config file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise McpConfigError(f"cannot read the MCP config {path}: {exc}") from exc
    except ValueError as exc:
        raise McpConfigError(f"the MCP config {path} is not valid JSON: {exc}") from exc
    return parse(data)
