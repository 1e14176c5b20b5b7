"""Function calling on chat completions: prompt, grammar, parsing and streaming of calls.

The tool format is generic, in the style many open models were trained on (Hermes, Qwen):
the tools' JSON schemas are listed in the system message inside ``<tools>``, and the model
calls one by answering ::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

(several such blocks, one per line, when ``parallel_tool_calls`` is not false). Neither
model we ship has a tool format in its chat template (both are plain ChatML), so there is
no model-specific format to prefer yet.

Why a grammar (``models.engine.json_grammar.tool_call_grammar``): with ``tool_choice`` ``required``
or a named function the answer *must* be a call, so the grammar allows only calls, each a
JSON object whose ``arguments`` match that function's parameters schema; even the 135M
embedded model then returns a well-formed call. With ``auto`` the grammar allows either
calls or plain text that does not begin with ``<``: the model chooses with its first token,
and a text answer costs one grammar check per token on the engine's lazy fast path.
``none`` leaves the tools out of the prompt and uses no grammar.

Streaming: ``AnswerSplitter`` holds back text that may still become a call, then passes
text on as it comes and reads calls with ``CallStream``, which reports a call's name as
soon as it is written and its arguments piece by piece; a call cut by ``max_tokens`` keeps
the arguments it got (``finish_reason: "length"``), as OpenAI's do.

History: an assistant message's ``tool_calls`` are rendered back as the same blocks, and a
``tool`` message becomes a user message holding ``<tool_response>`` (ChatML models know
the user role; the design sends execution output back the same way).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from models.engine.json_grammar import TOOL_CALL_OPEN, FunctionSchema, SchemaError, tool_call_grammar
from server.openai.errors import RequestRefused
from server.openai.schemas import ChatCompletionRequest, ChatMessage
from server.openai.structured_output import response_format_schema, schema_error
from server.openai.unsupported import refuse

CALL_MARK = TOOL_CALL_OPEN.strip()  # "<tool_call>"


@dataclass(frozen=True)
class ToolPlan:
    """What a request's ``tools`` and ``tool_choice`` ask for, ready for the engine."""

    tools: list[dict[str, Any]]  # the function definitions, as the client sent them
    grammar: str
    allow_text: bool  # tool_choice auto: the model may answer in text instead

    def system_text(self) -> str:
        listed = "\n".join(json.dumps({"type": "function", "function": t}) for t in self.tools)
        how = (
            "You may call functions to help with the user's request."
            if self.allow_text
            else "You must call a function to answer the user's request."
        )
        return (
            f"# Tools\n\n{how} The functions are described by these JSON schemas:\n"
            f"<tools>\n{listed}\n</tools>\n\n"
            "To call a function, answer with a JSON object holding its name and arguments "
            "inside <tool_call></tool_call> tags:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <arguments-object>}\n</tool_call>'
        )


def plan_tools(body: ChatCompletionRequest) -> ToolPlan | None:
    """Validate ``tools``/``tool_choice``; None when no call can happen (no tools, ``none``)."""
    choice = body.tool_choice
    if not body.tools:
        if choice not in (None, "none"):
            raise RequestRefused("'tool_choice' is set but 'tools' is empty", param="tool_choice")
        return None
    functions = []
    for i, tool in enumerate(body.tools):
        if tool.type != "function":
            raise refuse(f"tools[{i}].type", f"'{tool.type}' is not supported: only function tools")
        if tool.function is None:
            raise RequestRefused(f"'tools[{i}].function' is required", param=f"tools[{i}].function")
        functions.append(tool.function)
    if choice == "none":
        return None
    if choice is None or isinstance(choice, str):
        chosen = functions
    else:
        name = choice.function.get("name")
        chosen = [f for f in functions if f.name == name]
        if not chosen:
            raise RequestRefused(
                f"'tool_choice.function.name': no tool named {name!r} in 'tools'",
                param="tool_choice.function.name",
            )
    allow_text = choice in (None, "auto")
    specs = [FunctionSchema(f.name, f.parameters, f"tools[{functions.index(f)}].function.parameters") for f in chosen]
    answer = response_format_schema(body.response_format) if allow_text else None
    try:
        grammar = tool_call_grammar(
            specs,
            parallel=body.parallel_tool_calls is not False,
            allow_text=allow_text,
            text_schema=answer[0] if answer else None,
            text_path=answer[1] if answer else "schema",
        )
    except SchemaError as exc:
        raise schema_error(exc) from exc
    dumped = [f.model_dump(exclude_none=True) for f in functions]
    return ToolPlan(dumped, grammar, allow_text)


def prompt_messages(messages: Iterable[ChatMessage], plan: ToolPlan | None) -> list[dict[str, str]]:
    """The conversation as ``{"role", "content"}`` messages, tools and calls rendered."""
    rendered = [_render(m) for m in messages]
    if plan is None:
        return rendered
    if rendered and rendered[0]["role"] == "system":
        first = rendered[0]
        return [{"role": "system", "content": f"{first['content']}\n\n{plan.system_text()}"}, *rendered[1:]]
    return [{"role": "system", "content": plan.system_text()}, *rendered]


def _render(message: ChatMessage) -> dict[str, str]:
    if message.role == "tool":
        return {"role": "user", "content": f"<tool_response>\n{message.text()}\n</tool_response>"}
    plain = message.as_prompt_message()
    if message.role != "assistant" or not message.tool_calls:
        return plain
    blocks = [_call_block(c.function.name, c.function.arguments) for c in message.tool_calls]
    text = "\n".join([plain["content"], *blocks] if plain["content"] else blocks)
    return {"role": "assistant", "content": text}


def _call_block(name: str, arguments: str) -> str:
    try:
        parsed: Any = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        parsed = arguments  # shown as a string: the model still sees what was called
    return f"{TOOL_CALL_OPEN}{json.dumps({'name': name, 'arguments': parsed})}\n</tool_call>"


@dataclass(frozen=True)
class CallEvent:
    """Progress of the calls in a streaming answer: ``start`` (id and name known),
    ``arguments`` (more argument text), ``end`` (that call's arguments are complete)."""

    kind: Literal["start", "arguments", "end"]
    index: int
    text: str = ""


class CallStream:
    """Reads ``<tool_call>`` blocks as their text streams in, and says what became known.

    Why incremental: a client streaming a call gets its id and name as soon as the model
    wrote them, then the arguments in pieces as they are generated, as OpenAI streams them.
    The arguments are the JSON object the model wrote (the grammar guarantees its shape);
    its end is found by counting brackets outside strings, so no text is held back.
    """

    _HEAD = re.compile(r'\s*<tool_call>\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')
    _TAIL = re.compile(r"\s*\}\s*</tool_call>")

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []  # OpenAI tool_calls entries, arguments so far
        self._text = ""
        self._at = 0
        self._phase: Literal["head", "arguments", "tail"] = "head"
        self._depth = 0
        self._in_string = False
        self._escaped = False

    @property
    def text(self) -> str:
        """Everything fed so far."""
        return self._text

    @property
    def complete(self) -> bool:
        """Every call read to its closing tag (False: cut short, e.g. by max_tokens)."""
        return bool(self.calls) and self._phase == "head" and not self._text[self._at :].strip()

    def feed(self, text: str) -> list[CallEvent]:
        self._text += text
        events: list[CallEvent] = []
        while True:
            if self._phase == "head":
                match = self._HEAD.match(self._text, self._at)
                if match is None:
                    return events
                name = json.loads(f'"{match.group(1)}"')
                call_id = f"call_{uuid.uuid4().hex[:24]}"
                self.calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}})
                events.append(CallEvent("start", len(self.calls) - 1))
                self._at, self._phase, self._depth = match.end(), "arguments", 0
            elif self._phase == "arguments":
                if self._depth == 0:  # whitespace before the object is not part of it
                    rest = self._text[self._at :]
                    self._at += len(rest) - len(rest.lstrip())
                end = self._scan_arguments()
                piece = self._text[self._at : end]
                self._at = end
                if piece:
                    self.calls[-1]["function"]["arguments"] += piece
                    events.append(CallEvent("arguments", len(self.calls) - 1, piece))
                if self._depth > 0 or not self.calls[-1]["function"]["arguments"]:
                    return events
                events.append(CallEvent("end", len(self.calls) - 1))
                self._phase = "tail"
            else:
                match = self._TAIL.match(self._text, self._at)
                if match is None:
                    return events
                self._at, self._phase = match.end(), "head"

    def _scan_arguments(self) -> int:
        """Where the arguments object ends in the text so far (or the text's end)."""
        for i in range(self._at, len(self._text)):
            char = self._text[i]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    return i + 1
        return len(self._text)


def parse_tool_calls(text: str) -> CallStream | None:
    """The calls of a whole answer made of call blocks; None when it holds none (text)."""
    if not text.lstrip().startswith(CALL_MARK):
        return None
    stream = CallStream()
    stream.feed(text)
    return stream if stream.calls else None


def may_become_call(text: str) -> bool:
    """While streaming: whether the text so far could still be (the start of) a call."""
    stripped = text.lstrip()
    return stripped.startswith(CALL_MARK) or CALL_MARK.startswith(stripped)


class AnswerSplitter:
    """Decides, as an answer streams, whether it is text or calls, and routes each piece.

    With tools, text that may still become a call (whitespace, ``<tool``) is held back
    until it is decided; text is then passed on as it comes, calls as ``CallEvent``s.
    """

    def __init__(self, plan: ToolPlan | None) -> None:
        self.mode: Literal["undecided", "text", "calls"] = "text" if plan is None else "undecided"
        self.calls = CallStream()
        self._held = ""
        self._call_text = ""

    def feed(self, piece: str) -> tuple[str, list[CallEvent]]:
        """Text to send on now, and call events that became known."""
        if self.mode == "undecided":
            self._held += piece
            if self._held.lstrip().startswith(CALL_MARK):
                self.mode = "calls"
            elif may_become_call(self._held):
                return "", []
            else:
                self.mode = "text"
            piece, self._held = self._held, ""
        if self.mode == "calls":
            self._call_text += piece
            return "", self.calls.feed(piece)
        return piece, []

    def leftover(self) -> str:
        """At the end: text never sent (held, or a call cut before its name was complete)."""
        if self.mode == "calls" and not self.calls.calls:
            return self._call_text
        return self._held if self.mode == "undecided" else ""


def call_delta(event: CallEvent, calls: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The chat-completions stream delta for one call event (``end`` has none)."""
    if event.kind == "start":
        call = calls[event.index]
        head = {"name": call["function"]["name"], "arguments": ""}
        return {"tool_calls": [{"index": event.index, "id": call["id"], "type": "function", "function": head}]}
    if event.kind == "arguments":
        return {"tool_calls": [{"index": event.index, "function": {"arguments": event.text}}]}
    return None
