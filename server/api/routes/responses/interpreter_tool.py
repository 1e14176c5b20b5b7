"""The Responses API's ``code_interpreter`` tool, mapped onto our agent loop: the request side.

A request with ``tools: [{"type": "code_interpreter", "container": ...}]`` is answered by an
agent run (why: ``interpreter_items``), whose request is built here directly from the
Responses body, in the agent's terms (``RunRequest``): not as an ``/v1/agent`` body, whose
fields and refusals are that endpoint's.

Containers: ``{"type": "auto"}`` starts a new session, except after a
``previous_response_id`` whose session is still alive, which it continues (variables,
imports and files kept, as an OpenAI container outlives its response); a container id
string names a live session to continue (404 naming ``tools[0].container`` otherwise).

MCP tools (``{"type": "mcp", "server_label": ...}`` beside it) name configured MCP servers
whose tools the agent's code may call: only those servers, only ``allowed_tools`` of them,
and ``require_approval`` adds approvals to the operator's (``server.tools.approvals.rules``; it
never removes one). A call that needs approval ends the response with an
``mcp_approval_request`` item (the call waits in the sandbox); the next request's
``mcp_approval_response`` item with ``previous_response_id`` decides it and the same
execution goes on (``server.api.routes.responses.interpreter``).

What is refused, naming the field: other tools beside it (function tools go through the
chat path; the agent's turns are CodeAct turns), ``tool_choice`` other than ``auto``
(the loop cannot force or forbid running code), uploaded ``file_ids``, ``skills``, a
network policy other than ``disabled``, and a ``text.format`` other than text.

It lives beside its route (``interpreter.py``), not in ``server/openai/``: it maps
the wire format onto the agent, and the wire formats depend on nothing else in ``server/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.agent.service import RunRequest
from server.api.agent_schemas import loop_options
from server.openai.errors import RequestRefused
from server.openai.responses_items import ResponsesRequest
from server.openai.unsupported import refuse
from server.settings import Settings


@dataclass(frozen=True)
class InterpreterTool:
    """A request's code interpreter: ``container`` names a session to continue (None: auto)."""

    container: str | None = None
    #: The request's ``mcp`` tools, each with its index in ``tools``.
    mcp: tuple[tuple[int, Mapping[str, Any]], ...] = ()
    #: Where the code interpreter is in ``tools`` (errors name it).
    at: int = 0


def interpreter_tool(body: ResponsesRequest) -> InterpreterTool | None:
    """The request's code interpreter, or None when it has none; a 400 for what it cannot do."""
    tools = body.tools or []
    kinds = [t.get("type") if isinstance(t, dict) else None for t in tools]
    if "code_interpreter" not in kinds:
        return None
    if kinds.count("code_interpreter") > 1 or any(k not in ("code_interpreter", "mcp") for k in kinds):
        raise refuse("tools", "may combine code_interpreter only with mcp tools on this server")
    at = kinds.index("code_interpreter")
    mcp = tuple((i, t) for i, t in enumerate(tools) if kinds[i] == "mcp")
    if body.tool_choice not in (None, "auto"):
        raise refuse("tool_choice", "other than 'auto' is not supported with code_interpreter")
    fmt = (body.text or {}).get("format") or {"type": "text"}
    if fmt.get("type") != "text":
        raise refuse("text.format", "other than text is not supported with code_interpreter")
    container = tools[at].get("container")
    where = f"tools[{at}].container"
    if isinstance(container, str) and container:
        return InterpreterTool(container, mcp, at)
    if not isinstance(container, dict) or container.get("type") != "auto":
        raise RequestRefused(f'\'{where}\' must be a container id or {{"type": "auto"}}', param=where)
    if container.get("file_ids"):
        raise refuse(f"{where}.file_ids", "(uploaded files) is not supported: this server has no file store")
    if container.get("skills"):
        raise refuse(f"{where}.skills", "is not supported by this server")
    policy = container.get("network_policy")
    if policy and policy.get("type") != "disabled":
        raise refuse(f"{where}.network_policy", "other than 'disabled' is not supported")
    return InterpreterTool(None, mcp, at)


def run_request(
    body: ResponsesRequest, messages: list[dict[str, Any]], session_id: str | None, settings: Settings
) -> RunRequest:
    """The agent run that answers this response: ``max_output_tokens`` caps each turn,
    ``max_tool_calls`` sets the turns (calls plus the answer); the loop's other options are
    the server's. ``messages`` are chat messages (``input_messages``, stored history)."""
    max_turns = body.max_tool_calls + 1 if body.max_tool_calls is not None else None
    options = loop_options(
        settings, max_turns=max_turns, max_tokens=body.max_output_tokens, temperature=body.temperature, top_p=body.top_p
    )
    return RunRequest([_prompt_message(m) for m in messages], options, session_id=session_id)


def _prompt_message(message: dict[str, Any]) -> dict[str, str]:
    """A chat message as the agent reads it: text only (a call an earlier response made is not
    its business), ``developer`` as ``system``, a tool result with the call it answers."""
    role = "system" if message["role"] == "developer" else message["role"]
    prompt = {"role": role, "content": message.get("content") or ""}
    if role == "tool" and message.get("tool_call_id"):
        prompt["tool_call_id"] = message["tool_call_id"]
    return prompt
