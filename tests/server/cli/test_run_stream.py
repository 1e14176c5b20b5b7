"""``codeact-server run --server URL`` reading a live server's agent stream (scripted model).

``stream_task`` reads ``/v1/agent``'s server-sent events with the parser the remote engine
uses (``models.engine.sse``); here it runs against real uvicorn and the real sandbox.
"""

from __future__ import annotations

import io

import pytest

from models.engine.scripted import ScriptedEngine
from server.cli.run import TerminalView, stream_task
from tests.scripted_agent import MODEL, scripted_server


def body(task: str) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": task}], "stream": True}


def test_run_shows_code_output_and_answer_and_returns_the_done_event() -> None:
    engine = ScriptedEngine(["Let me compute.\n<execute>print(6 * 7)</execute>", "<solution>42</solution>"])
    out = io.StringIO()
    with scripted_server(engine) as live:
        done = stream_task(live.url, body("What is 6 * 7?"), None, TerminalView(out))
    shown = out.getvalue()
    assert done["type"] == "done" and done["finish_reason"] == "solution" and done["turns"] == 2
    assert "--- code ---\nprint(6 * 7)" in shown
    assert "--- output ---\nObservation:\n42" in shown
    assert "--- answer ---\n42" in shown
    assert f"[solution after 2 turn(s); session {done['session_id']}]" in shown


def test_an_error_event_in_the_stream_is_raised() -> None:
    engine = ScriptedEngine([])  # no turn to play: the engine fails once the stream has begun
    with scripted_server(engine) as live, pytest.raises(RuntimeError, match="no turn left"):
        stream_task(live.url, body("anything"), None, TerminalView(io.StringIO()))
