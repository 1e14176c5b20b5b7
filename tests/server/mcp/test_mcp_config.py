"""``--mcp-config``: the mcpServers shape is checked before anything starts, naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.cli.errors import CLIError
from server.cli.main import check_mcp_config
from server.mcp.config import HttpServer, McpConfigError, StdioServer, load, parse
from server.settings import Settings


def test_stdio_and_http_entries() -> None:
    servers = parse(
        {
            "mcpServers": {
                "files": {"command": "npx", "args": ["-y", "fs"], "env": {"A": "1"}, "cwd": "/srv"},
                "web-search": {"url": "https://example.test/mcp", "headers": {"Authorization": "Bearer k"}},
            }
        }
    )
    assert servers == [
        StdioServer("files", "npx", ("-y", "fs"), {"A": "1"}, "/srv"),
        HttpServer("web-search", "https://example.test/mcp", {"Authorization": "Bearer k"}),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], '"mcpServers" object'),
        ({"mcpServers": {"1bad": {"command": "x"}}}, "mcpServers.1bad: a server name must start with a letter"),
        ({"mcpServers": {"a": {"command": "x", "url": "http://h"}}}, "mcpServers.a needs exactly one of command"),
        ({"mcpServers": {"a": {}}}, "mcpServers.a needs exactly one of command"),
        ({"mcpServers": {"a": {"command": "x", "args": "-v"}}}, "mcpServers.a.args must be a list of strings"),
        ({"mcpServers": {"a": {"command": "x", "env": {"N": 1}}}}, "mcpServers.a.env must be an object of strings"),
        ({"mcpServers": {"a": {"url": "ftp://h"}}}, "mcpServers.a.url must be an http:// or https:// URL"),
    ],
)
def test_mistakes_name_the_server_and_field(data: object, message: str) -> None:
    with pytest.raises(McpConfigError, match=message.replace(".", r"\.").replace('"', ".")):
        parse(data)


def test_serve_refuses_a_broken_file_before_loading_anything(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text("{not json")
    with pytest.raises(CLIError, match="is not valid JSON"):
        check_mcp_config(Settings(mcp_config=path))
    with pytest.raises(CLIError, match="cannot read the MCP config"):
        check_mcp_config(Settings(mcp_config=tmp_path / "missing.json"))
    path.write_text(json.dumps({"mcpServers": {"ok": {"command": "x"}}}))
    check_mcp_config(Settings(mcp_config=path))
    assert load(path)[0].name == "ok"
