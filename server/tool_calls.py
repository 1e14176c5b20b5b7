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

Why a grammar (``models.json_grammar.tool_call_grammar``): with ``tool_choice`` ``required``
or a named function the answer *must* be a call, so the grammar allows only calls, each a
JSON object whose ``arguments`` match that function's parameters schema; even the 135M
embedded model then returns a well-formed call. With ``auto`` the grammar allows either
calls or plain text that does not begin with ``<``: the model chooses with its first token,
and a text answer costs one grammar check per token on the engine's lazy fast path.
``none`` leaves the tools out of the prompt and uses no grammar.

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
from typing import Any

from models.json_grammar import TOOL_CALL_OPEN, SchemaError, ToolSpec, tool_call_grammar
from server.errors import InvalidRequest
from server.schemas import ChatCompletionRequest, ChatMessage
from server.structured_output import schema_error
from server.unsupported import refuse

_CALL_RE = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)
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
            raise InvalidRequest("'tool_choice' is set but 'tools' is empty", param="tool_choice")
        return None
    functions = []
    for i, tool in enumerate(body.tools):
        if tool.type != "function" or tool.function is None:
            raise refuse(f"tools[{i}].type", f"'{tool.type}' is not supported: only function tools")
        functions.append(tool.function)
    if choice == "none":
        return None
    if choice is None or isinstance(choice, str):
        chosen = functions
    else:
        name = choice.function.get("name")
        chosen = [f for f in functions if f.name == name]
        if not chosen:
            raise InvalidRequest(
                f"'tool_choice.function.name': no tool named {name!r} in 'tools'",
                param="tool_choice.function.name",
            )
    allow_text = choice in (None, "auto")
    specs = [ToolSpec(f.name, f.parameters, f"tools[{functions.index(f)}].function.parameters") for f in chosen]
    try:
        grammar = tool_call_grammar(specs, parallel=body.parallel_tool_calls is not False, allow_text=allow_text)
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


def parse_tool_calls(text: str) -> list[dict[str, Any]] | None:
    """OpenAI ``tool_calls`` from an answer made only of call blocks; None if it is not."""
    if not text.lstrip().startswith(CALL_MARK):
        return None
    found = _CALL_RE.findall(text)
    if not found or _CALL_RE.sub("", text).strip():
        return None  # cut short (length) or malformed: the caller returns it as text
    calls = []
    for raw in found:
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            return None
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return None
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": obj["name"], "arguments": json.dumps(obj.get("arguments", {}))},
            }
        )
    return calls


def may_become_call(text: str) -> bool:
    """While streaming: whether the text so far could still be (the start of) a call."""
    stripped = text.lstrip()
    return stripped.startswith(CALL_MARK) or CALL_MARK.startswith(stripped)


def call_deltas(calls: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Stream deltas for finished calls: id/name with empty arguments, then the arguments."""
    for index, call in enumerate(calls):
        head = {"name": call["function"]["name"], "arguments": ""}
        yield {"tool_calls": [{"index": index, "id": call["id"], "type": "function", "function": head}]}
        yield {"tool_calls": [{"index": index, "function": {"arguments": call["function"]["arguments"]}}]}
