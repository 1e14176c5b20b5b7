"""The Responses API's ``code_interpreter`` tool, mapped onto our agent loop: the output side.

Why the agent loop: OpenAI's code interpreter lets the model write Python, runs it in a
container and shows it the output until it answers; that is exactly the CodeAct loop of
``/v1/agent`` (``server.agent.service``), whose sandbox worker is the container. So a
request with ``tools: [{"type": "code_interpreter", "container": ...}]`` is answered by an
agent run (``interpreter_tool`` builds it), and the loop's events become Responses output items:

- each turn's thinking -> a ``reasoning`` item (``reasoning_text`` content);
- each ``<execute>`` block that ran -> a ``code_interpreter_call`` item: its ``code``, its
  ``container_id`` (the agent session's id), its ``outputs``: one ``logs`` entry (stdout,
  stderr, the error) and an ``image`` entry per image file the run wrote, whose ``url``
  is the session file route; status ``failed`` when the run was killed or timed out;
- the final answer -> one ``message`` item; every file the code wrote is cited on its
  text as a ``container_file_citation`` (``file_id`` is the workspace path), the shape
  OpenAI uses for files a code interpreter made.

Outputs are always included (``include: ["code_interpreter_call.outputs"]`` is accepted and
changes nothing): they cost nothing here.

Streaming uses OpenAI's event types: ``response.reasoning_text.delta``/``.done``, then per
call ``response.output_item.added``, ``response.code_interpreter_call.in_progress``,
``response.code_interpreter_call_code.delta``... ``.done``,
``response.code_interpreter_call.interpreting``, ``response.code_interpreter_call.completed``
and ``response.output_item.done``. The loop reports an execution only once it finished, so
``interpreting`` and ``completed`` arrive together. The final message is sent once the
loop has decided it (a ``<solution>`` can still be run as code), as one delta.

What a request may ask of it (containers, MCP tools, what is refused): ``interpreter_tool``.

It lives beside its route (``interpreter.py``), not in ``server/openai/``: it maps
the wire format onto the agent, and the wire formats depend on nothing else in ``server/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from server.agent.steps import AgentDone, AgentEvent, Observation, Step, StepDone, TurnDelta
from server.openai.responses_items import message_item, new_id, output_text_part
from server.tools.approvals.gate import ApprovalPending

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg"}


def call_item(item_id: str, container_id: str, code: str, status: str, outputs: list[dict] | None) -> dict[str, Any]:
    return {
        "type": "code_interpreter_call",
        "id": item_id,
        "status": status,
        "code": code,
        "container_id": container_id,
        "outputs": outputs,
    }


def reasoning_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [] if status == "in_progress" else [{"type": "reasoning_text", "text": text}]
    return {"type": "reasoning", "id": item_id, "summary": [], "content": content, "status": status}


def logs_of(observation: Observation) -> str:
    """What the run printed and raised, and why it stopped if it was stopped."""
    pieces = [p if p.endswith("\n") else p + "\n" for p in (observation.stdout, observation.stderr) if p]
    if observation.error:
        pieces.append(observation.error.rstrip("\n") + "\n")
    if observation.timed_out:
        pieces.append("[the execution timed out and was stopped]\n")
    elif observation.killed_reason:
        pieces.append(f"[the execution was stopped: {observation.killed_reason}]\n")
    if observation.truncated:
        pieces.append("[the output was cut]\n")
    return "".join(pieces)


Event = tuple[str, dict[str, Any]]  # a stream event's type and its fields (no sequence number)


@dataclass
class _Open:
    """The output item being streamed: a reasoning item or a call, for one step."""

    kind: str  # "reasoning" | "call"
    step: int
    item_id: str
    index: int
    text: str = ""


@dataclass
class InterpreterOutput:
    """Turns agent events into output items and, on the way, the stream's events.

    ``file_url(path)`` is where a client downloads a workspace file. Feed every event of
    the run; ``output`` is then the response's output, ``status``/``incomplete`` its end.
    """

    container_id: str
    file_url: Callable[[str], str]
    output: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    status: str = "in_progress"
    incomplete: str | None = None
    _open: _Open | None = None

    def feed(self, event: AgentEvent | ApprovalPending) -> list[Event]:
        if isinstance(event, ApprovalPending):
            return self._approval(event)
        if isinstance(event, TurnDelta):
            return self._delta(event)
        if isinstance(event, StepDone):
            return self._step(event.step)
        assert isinstance(event, AgentDone)
        return self._done(event)

    def _start(self, kind: str, step: int, item: dict[str, Any]) -> list[Event]:
        events = self._close()
        self._open = _Open(kind, step, item["id"], len(self.output))
        self.output.append(item)
        events.append(("response.output_item.added", {"output_index": self._open.index, "item": item}))
        if kind == "call":
            events.append(("response.code_interpreter_call.in_progress", self._where()))
        return events

    def _where(self) -> dict[str, Any]:
        assert self._open is not None
        return {"item_id": self._open.item_id, "output_index": self._open.index}

    def _delta(self, delta: TurnDelta) -> list[Event]:
        if delta.channel == "answer" or not delta.text:
            return []  # the answer is sent once decided (see the module docstring)
        kind = "reasoning" if delta.channel == "thought" else "call"
        events: list[Event] = []
        if self._open is None or (self._open.kind, self._open.step) != (kind, delta.step_index):
            item = (
                reasoning_item(new_id("rs"), "", "in_progress")
                if kind == "reasoning"
                else call_item(new_id("ci"), self.container_id, "", "in_progress", None)
            )
            events = self._start(kind, delta.step_index, item)
        assert self._open is not None
        self._open.text += delta.text
        if kind == "reasoning":
            events.append(("response.reasoning_text.delta", {**self._where(), "content_index": 0, "delta": delta.text}))
        else:
            events.append(("response.code_interpreter_call_code.delta", {**self._where(), "delta": delta.text}))
        return events

    def _close(self, step: Step | None = None) -> list[Event]:
        """Finish the open item (``step``: the finished step a call belongs to, if known)."""
        opened, self._open = self._open, None
        if opened is None:
            return []
        where = {"item_id": opened.item_id, "output_index": opened.index}
        if opened.kind == "reasoning":
            item = reasoning_item(opened.item_id, opened.text, "completed")
            self.output[opened.index] = item
            return [
                ("response.reasoning_text.done", {**where, "content_index": 0, "text": opened.text}),
                ("response.output_item.done", {"output_index": opened.index, "item": item}),
            ]
        code = _ran_code(step) if step is not None else None
        observation = step.observation if step is not None and code is not None else None
        events: list[Event] = [("response.code_interpreter_call_code.done", {**where, "code": code or opened.text})]
        if code is None:  # the block never ran (the turn was cut inside it)
            item = call_item(opened.item_id, self.container_id, opened.text, "incomplete", None)
        else:
            item = self._finished_call(opened.item_id, code, observation)
            # OpenAI's stream has no failed event for a call: a failed run also ends with
            # ``completed``, and the item's status says it failed.
            events.append(("response.code_interpreter_call.interpreting", where))
            events.append(("response.code_interpreter_call.completed", where))
        self.output[opened.index] = item
        events.append(("response.output_item.done", {"output_index": opened.index, "item": item}))
        return events

    def _finished_call(self, item_id: str, code: str, observation: Observation | None) -> dict[str, Any]:
        if observation is None:  # a repeat the loop answered: the same output as before
            return call_item(item_id, self.container_id, code, "completed", [])
        outputs: list[dict[str, Any]] = [{"type": "logs", "logs": logs_of(observation)}]
        for path in observation.files:
            if path not in self.files:
                self.files.append(path)
            if PurePosixPath(path).suffix.lower() in IMAGE_SUFFIXES:
                outputs.append({"type": "image", "url": self.file_url(path)})
        failed = observation.timed_out or observation.killed_reason is not None
        return call_item(item_id, self.container_id, code, "failed" if failed else "completed", outputs)

    def _step(self, step: Step) -> list[Event]:
        open_call = self._open is not None and self._open.kind == "call" and self._open.step == step.index
        events = self._close(step) if open_call else self._close()
        code = _ran_code(step)
        if code is not None and not open_call:  # code that streamed as an answer, then ran
            item = call_item(new_id("ci"), self.container_id, "", "in_progress", None)
            events += self._start("call", step.index, item)
            events.append(("response.code_interpreter_call_code.delta", {**self._where(), "delta": code}))
            assert self._open is not None
            self._open.text = code
            events += self._close(step)
        return events

    def _done(self, done: AgentDone) -> list[Event]:
        events = self._close()
        cut = done.finish_reason == "length"
        self.status = "incomplete" if cut else "completed"
        self.incomplete = "max_output_tokens" if cut else None
        message_id = new_id("msg")
        index = len(self.output)
        where = {"item_id": message_id, "output_index": index, "content_index": 0}
        part = output_text_part(done.message)
        part["annotations"] = [self._citation(path, len(done.message)) for path in self.files]
        item = message_item(message_id, done.message, self.status)
        item["content"] = [part]
        self.output.append(item)
        started = message_item(message_id, "", "in_progress")
        events += [
            ("response.output_item.added", {"output_index": index, "item": started}),
            ("response.content_part.added", {**where, "part": output_text_part("")}),
            ("response.output_text.delta", {**where, "delta": done.message, "logprobs": []}),
            ("response.output_text.done", {**where, "text": done.message, "logprobs": []}),
            ("response.content_part.done", {**where, "part": part}),
            ("response.output_item.done", {"output_index": index, "item": item}),
        ]
        return events

    def _approval(self, pending: ApprovalPending) -> list[Event]:
        """A call waiting for approval: the code that made it is ``interpreting`` (it goes on in
        the next response), and an ``mcp_approval_request`` item ends this one."""
        events: list[Event] = []
        opened = self._open
        if opened is not None and opened.kind == "call":
            self._open = None
            where = {"item_id": opened.item_id, "output_index": opened.index}
            item = call_item(opened.item_id, self.container_id, opened.text, "interpreting", None)
            self.output[opened.index] = item
            events += [
                ("response.code_interpreter_call_code.done", {**where, "code": opened.text}),
                ("response.code_interpreter_call.interpreting", where),
                ("response.output_item.done", {"output_index": opened.index, "item": item}),
            ]
        else:
            events += self._close()
        request = pending.request
        ask = {
            "type": "mcp_approval_request",
            "id": request.id,
            "server_label": request.server,
            "name": request.tool,
            "arguments": json.dumps(request.arguments, ensure_ascii=False),
        }
        index = len(self.output)
        self.output.append(ask)
        self.status = "completed"
        events += [
            ("response.output_item.added", {"output_index": index, "item": ask}),
            ("response.output_item.done", {"output_index": index, "item": ask}),
        ]
        return events

    def _citation(self, path: str, end: int) -> dict[str, Any]:
        return {
            "type": "container_file_citation",
            "container_id": self.container_id,
            "file_id": path,
            "filename": PurePosixPath(path).name,
            "start_index": end,
            "end_index": end,
        }


def _ran_code(step: Step) -> str | None:
    """The code this step ran in the sandbox, if it ran any."""
    if step.repeated_code is not None:
        return step.repeated_code
    if step.action.code is not None and step.observation is not None:
        return step.action.code
    return None
