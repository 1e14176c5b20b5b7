"""A live server whose MCP config holds a real server with a read-only and a writing tool
(``notes_mcp_server.py``), no ``require_approval`` key: the defaults from ``readOnlyHint``
decide. The scripted model writes the code, so each test knows which calls the sandbox makes."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer
from tests.scripted_agent import ANSWER_AT_ONCE
from tests.server.tools.approvals import notes_mcp_server

NOTES_SERVER = Path(notes_mcp_server.__file__)
#: Short, so the timeout test is quick; long enough for a test to decide well before it.
APPROVAL_TIMEOUT_S = 8.0
EXECUTION_TIMEOUT_S = 5.0

#: Agent code that reads (unasked), keeps a variable, then writes (asks) and says what became of it.
WRITE_CODE = (
    "<execute>\nseen = notes_read_notes()\nx = 41\ntry:\n    r = notes_write_note(text='hello')\n"
    "    print('wrote', r, x + 1, seen)\nexcept PermissionError as e:\n    print('denied:', e)\n</execute>"
)


def mcp_config(path: Path, notes: Path, **extra: object) -> Path:
    entry = {"command": sys.executable, "args": [str(NOTES_SERVER)], "env": {"NOTES_FILE": str(notes)}, **extra}
    path.write_text(json.dumps({"mcpServers": {"notes": entry}}))
    return path


@pytest.fixture(scope="module")
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("approvals")


@pytest.fixture(scope="module")
def notes(workdir: Path) -> Path:
    return workdir / "notes.txt"


@pytest.fixture(scope="module")
def audit(workdir: Path) -> Path:
    return workdir / "audit.jsonl"


@pytest.fixture(scope="module")
def server(engine: ScriptedEngine, workdir: Path, notes: Path, audit: Path) -> Iterator[LiveServer]:
    settings = Settings(
        sandbox_pool_size=1,
        # Shorter than the approval timeout: a call waiting for a decision must not use it up.
        execution_timeout=EXECUTION_TIMEOUT_S,
        max_sessions=8,
        mcp_config=mcp_config(workdir / "mcp.json", notes),
        approval_timeout=APPROVAL_TIMEOUT_S,
        audit_log=audit,
        **ANSWER_AT_ONCE,
    )
    with LiveServer(create_app(settings, engine)) as live:
        yield live


@pytest.fixture(autouse=True)
def _fresh(engine: ScriptedEngine, notes: Path) -> Iterator[None]:
    engine.requests.clear()
    notes.unlink(missing_ok=True)
    yield
    left = list(engine._turns)  # noqa: SLF001
    engine._turns.clear()  # noqa: SLF001 - a failed test must not feed the next one
    assert not left, f"the test left scripted turns unused: {left}"


def decisions(audit: Path) -> list[dict]:
    """The approval decisions in the audit log, oldest first."""
    if not audit.exists():
        return []
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    return [line for line in lines if line.get("event") == "approval_decision"]
