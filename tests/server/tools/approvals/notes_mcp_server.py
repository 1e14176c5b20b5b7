"""A real MCP server for the approval tests (the ``mcp`` package, over stdio): one tool that
only reads (annotated ``readOnlyHint``) and one that writes, whose effect the tests read back
from the file named by ``NOTES_FILE``."""

from __future__ import annotations

import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("notes")
NOTES = Path(os.environ.get("NOTES_FILE", "notes.txt"))


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def read_notes() -> list[str]:
    """The notes written so far."""
    return NOTES.read_text().splitlines() if NOTES.exists() else []


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def write_note(text: str) -> str:
    """Append a note."""
    with NOTES.open("a") as notes:
        notes.write(text + "\n")
    return f"noted: {text}"


if __name__ == "__main__":
    server.run()
