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


def test_run_with_samples_streams_run_0_and_shows_every_answer_and_the_agreement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from server.agent.consensus import runner

    monkeypatch.setattr(runner, "task_seed", lambda messages: 0)  # sample i is seeded i
    turns = {None: ["<execute>print(6 * 7)</execute>", "<solution>42</solution>"], 1: ["<solution>42.0</solution>"]}
    engine = ScriptedEngine(sampler=lambda r: turns[r.seed][r.prompt.count("<|im_start|>assistant\n") - 1])
    out = io.StringIO()
    with scripted_server(engine) as live:
        done = stream_task(
            live.url, {**body("What is 6 * 7?"), "samples": 2, "temperature": 0}, None, TerminalView(out)
        )
    shown = out.getvalue()
    assert done["agreement"]["votes"] == 2
    assert shown.count("--- code ---") == 1 and "--- output ---\nObservation:\n42" in shown  # run 0 only
    assert "[sample 0: 42 (solution after 2 turn(s))]" in shown
    assert "[sample 1: 42.0 (solution after 1 turn(s))]" in shown
    assert "[2 samples: 2 of 2 agree on 42; the answer of sample 0]" in shown
