"""Approvals on ``/v1/responses`` through the official ``openai`` client, end to end: real
uvicorn, the real sandbox, a real MCP server (``notes_mcp_server.py``), the scripted model.

The client's own types carry the whole exchange: an ``McpApprovalRequest`` output item, then
an ``mcp_approval_response`` input item with ``previous_response_id``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from openai import BadRequestError, OpenAI
from openai.types.responses import ResponseCodeInterpreterToolCall, ResponseOutputMessage
from openai.types.responses.response_output_item import McpApprovalRequest

from models.engine.scripted import ScriptedEngine
from tests.live_server import LiveServer
from tests.scripted_agent import MODEL
from tests.server.tools.approvals.conftest import APPROVAL_TIMEOUT_S, EXECUTION_TIMEOUT_S, WRITE_CODE, decisions

INTERPRETER = {"type": "code_interpreter", "container": {"type": "auto"}}


def client(server: LiveServer) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def ask(server: LiveServer, **extra: object):  # noqa: ANN201 - the client's Response
    with client(server) as openai:
        return openai.responses.create(
            model=MODEL, input="Note hello.", tools=extra.pop("tools", [INTERPRETER]), **extra
        )


def answer(server: LiveServer, previous: str, approval_id: str, approve: bool, reason: str | None = None):  # noqa: ANN201
    item: dict = {"type": "mcp_approval_response", "approval_request_id": approval_id, "approve": approve}
    if reason is not None:
        item["reason"] = reason
    with client(server) as openai:
        return openai.responses.create(model=MODEL, input=[item], previous_response_id=previous, tools=[INTERPRETER])


def the_request(response) -> McpApprovalRequest:  # noqa: ANN001
    assert response.status == "completed"
    last = response.output[-1]
    assert isinstance(last, McpApprovalRequest), response.output
    return last


def logs(response) -> str:  # noqa: ANN001
    calls = [o for o in response.output if isinstance(o, ResponseCodeInterpreterToolCall)]
    assert calls, response.output
    return "".join(out.logs for out in calls[-1].outputs or [] if out.type == "logs")


def test_the_writing_call_asks_and_approving_resumes_the_same_execution(
    server: LiveServer, engine: ScriptedEngine, notes: Path, audit: Path
) -> None:
    engine.enqueue(WRITE_CODE, "<solution>done</solution>")
    first = ask(server)
    request = the_request(first)
    assert (request.server_label, request.name, request.arguments) == ("notes", "write_note", '{"text": "hello"}')
    assert request.id.startswith("mcpr_") and len(request.id) > 30
    waiting = [o for o in first.output if isinstance(o, ResponseCodeInterpreterToolCall)]
    assert waiting[-1].status == "interpreting" and "notes_write_note" in (waiting[-1].code or "")
    assert not notes.exists(), "the writing tool ran before anyone approved it"
    assert list(engine._turns) == ["<solution>done</solution>"], "the model went on while the call waited"  # noqa: SLF001

    second = answer(server, first.id, request.id, True)
    assert second.status == "completed"
    # The same execution went on: the read-only call ran unasked before, x is still 41.
    assert logs(second) == "wrote noted: hello 42 []\n"
    assert notes.read_text() == "hello\n"
    calls = [o for o in second.output if isinstance(o, ResponseCodeInterpreterToolCall)]
    assert calls[-1].container_id == waiting[-1].container_id
    message = second.output[-1]
    assert isinstance(message, ResponseOutputMessage) and second.output_text == "done"
    decided = decisions(audit)[-1]
    assert (decided["approval_id"], decided["approve"], decided["decided_by"]) == (request.id, True, "api")
    assert decided["tool"] == "write_note" and decided["arguments"] == {"text": "hello"}


def test_denying_raises_permission_error_in_the_code(
    server: LiveServer, engine: ScriptedEngine, notes: Path, audit: Path
) -> None:
    engine.enqueue(WRITE_CODE, "<solution>I was not allowed to write the note.</solution>")
    first = ask(server)
    request = the_request(first)
    second = answer(server, first.id, request.id, False, "not today")
    assert logs(second) == "denied: notes_write_note: the call was not approved: not today\n"
    assert not notes.exists()
    # The model read the denial as the code's output, and answered from it.
    assert "denied: notes_write_note: the call was not approved: not today" in engine.requests[-1].prompt
    assert second.output_text == "I was not allowed to write the note."
    decided = decisions(audit)[-1]
    assert (decided["approve"], decided["reason"], decided["decided_by"]) == (False, "not today", "api")


def test_no_answer_within_the_timeout_denies(
    server: LiveServer, engine: ScriptedEngine, notes: Path, audit: Path
) -> None:
    engine.enqueue(WRITE_CODE, "<solution>timed out</solution>")
    first = ask(server)
    request = the_request(first)
    deadline = time.monotonic() + APPROVAL_TIMEOUT_S + 10
    while not any(d["approval_id"] == request.id for d in decisions(audit)):
        assert time.monotonic() < deadline, "the timeout never denied the request"
        time.sleep(0.2)
    assert decisions(audit)[-1]["decided_by"] == "timeout"
    assert APPROVAL_TIMEOUT_S > EXECUTION_TIMEOUT_S  # the execution's own clock was paused meanwhile
    # A late approval changes nothing: the run goes on with the denial.
    second = answer(server, first.id, request.id, True)
    assert (
        logs(second)
        == f"denied: notes_write_note: the call was not approved: no decision within {APPROVAL_TIMEOUT_S:g} s\n"
    )
    assert not notes.exists()


def test_a_request_cannot_loosen_the_config_but_may_tighten_and_narrow(
    server: LiveServer, engine: ScriptedEngine, notes: Path
) -> None:
    # "never" from the request: the writing tool still asks (the operator's default says so).
    engine.enqueue(WRITE_CODE, "<solution>ok</solution>")
    loose = {"type": "mcp", "server_label": "notes", "require_approval": "never"}
    first = ask(server, tools=[INTERPRETER, loose])
    request = the_request(first)
    assert request.name == "write_note"
    answer(server, first.id, request.id, True)
    # "always": the read-only tool asks too.
    engine.enqueue("<execute>\nprint(notes_read_notes())\n</execute>", "<solution>ok</solution>")
    strict = {"type": "mcp", "server_label": "notes", "require_approval": "always"}
    first = ask(server, tools=[INTERPRETER, strict])
    assert the_request(first).name == "read_notes"
    second = answer(server, first.id, the_request(first).id, True)
    assert logs(second) == "['hello']\n"
    # allowed_tools: the writing tool is not there at all.
    engine.enqueue(
        "<execute>\nprint(notes_read_notes())\nnotes_write_note(text='x')\n</execute>", "<solution>ok</solution>"
    )
    narrow = {"type": "mcp", "server_label": "notes", "allowed_tools": ["read_notes"]}
    only = ask(server, tools=[INTERPRETER, narrow])
    assert only.output_text == "ok"
    assert "NameError: name 'notes_write_note' is not defined" in logs(only)
    assert notes.read_text() == "hello\n"


def test_what_an_mcp_tool_cannot_name_is_refused(server: LiveServer) -> None:
    with pytest.raises(BadRequestError) as refused:
        ask(server, tools=[INTERPRETER, {"type": "mcp", "server_label": "elsewhere"}])
    assert refused.value.body["param"] == "tools[1].server_label"  # type: ignore[index]
    with pytest.raises(BadRequestError) as refused:
        ask(server, tools=[INTERPRETER, {"type": "mcp", "server_label": "notes", "server_url": "http://x"}])
    assert refused.value.body["param"] == "tools[1].server_url"  # type: ignore[index]


def test_a_background_response_ends_with_the_request_and_the_next_one_goes_on(
    server: LiveServer, engine: ScriptedEngine, notes: Path
) -> None:
    engine.enqueue(WRITE_CODE, "<solution>done</solution>")
    with client(server) as openai:
        started = openai.responses.create(model=MODEL, input="Note hello.", tools=[INTERPRETER], background=True)
        deadline = time.monotonic() + 60
        while (first := openai.responses.retrieve(started.id)).status in ("queued", "in_progress"):
            assert time.monotonic() < deadline, "the background response never ended"
            time.sleep(0.2)
    request = the_request(first)
    second = answer(server, first.id, request.id, True)
    assert logs(second) == "wrote noted: hello 42 []\n" and notes.read_text() == "hello\n"
    with pytest.raises(BadRequestError) as refused, client(server) as openai:
        openai.responses.create(
            model=MODEL, input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}]
        )  # type: ignore[list-item]
    assert refused.value.body["param"] == "input[0]"  # type: ignore[index]


def test_a_guessed_approval_id_decides_nothing(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>\nprint(notes_read_notes())\n</execute>", "<solution>ok</solution>")
    done = ask(server)
    assert done.output_text == "ok"
    with pytest.raises(BadRequestError) as refused:
        answer(server, done.id, "mcpr_" + "A" * 32, True)
    assert refused.value.body["param"] == "input[0].approval_request_id"  # type: ignore[index]


def test_a_stream_ends_with_the_request_item(server: LiveServer, engine: ScriptedEngine, notes: Path) -> None:
    engine.enqueue(WRITE_CODE, "<solution>done</solution>")
    with (
        client(server) as openai,
        openai.responses.stream(model=MODEL, input="Note hello.", tools=[INTERPRETER]) as stream,
    ):
        events = list(stream)
        final = stream.get_final_response()
    added = [e.item for e in events if e.type == "response.output_item.added"]
    assert isinstance(added[-1], McpApprovalRequest)
    assert events[-1].type == "response.completed"
    request = the_request(final)
    second = answer(server, final.id, request.id, True)
    assert logs(second) == "wrote noted: hello 42 []\n" and notes.read_text() == "hello\n"
