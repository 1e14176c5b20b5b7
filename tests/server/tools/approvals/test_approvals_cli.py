"""``codeact-server run`` shows a call waiting for approval and asks about it on the terminal
(here a scripted answer stands in for the keyboard); the server is the real one of
``conftest.py``, with its real MCP server."""

from __future__ import annotations

import io
from pathlib import Path

from models.engine.scripted import ScriptedEngine
from server.cli.run import TerminalView, stream_task, terminal_decider
from tests.live_server import LiveServer
from tests.scripted_agent import MODEL
from tests.server.tools.approvals.conftest import WRITE_CODE


def test_the_terminal_is_asked_and_its_answer_decides(server: LiveServer, engine: ScriptedEngine, notes: Path) -> None:
    for answer, expected in (("y", "wrote noted: hello 42 []"), ("n", "denied: notes_write_note")):
        engine.enqueue(WRITE_CODE, "<solution>done</solution>")
        asked: list[str] = []

        def ask(prompt: str, answer: str = answer, asked: list[str] = asked) -> str:
            asked.append(prompt)
            return answer

        out = io.StringIO()
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Note hello."}], "stream": True}
        done = stream_task(server.url, body, None, TerminalView(out, terminal_decider(server.url, None, ask)))
        assert done["finish_reason"] == "solution"
        assert asked == ["Approve this call? [y/N] "]
        assert '[approval needed: notes.write_note({"text": "hello"})]' in out.getvalue()
        assert expected in out.getvalue()
    assert notes.read_text() == "hello\n"  # once: approved, then denied


def test_without_a_terminal_nobody_is_asked() -> None:
    assert terminal_decider("http://127.0.0.1:1", None) is None  # pytest's stdin is not a terminal
