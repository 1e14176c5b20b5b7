"""Turning an agent request into a running loop over a session (shared by HTTP and the CLI).

Continuing a session: the session already holds the conversation, so only the request's
trailing non-assistant messages (what came after the last assistant message) are new.
That lets a chat UI resend its whole history, as OpenAI clients do, without duplicating it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from models.engine.api import ContextOverflowError
from server.agent.loop import DEFAULT_TURN_TOKENS, AgentOptions, run_agent
from server.agent.policy import LoopPolicy, PromptStyle
from server.agent.prompts import ToolSpec, system_prompt, task_message
from server.agent.runtime import AgentRuntime
from server.agent.sessions import Session, SessionBusy
from server.agent.steps import AgentDone, StepDone
from server.agent.suspend import SuspendableRun
from server.api.agent_schemas import AgentRequest
from server.api.errors import InvalidRequest
from server.openai.schemas import ChatMessage
from server.tools import session_tools


@dataclass
class PreparedRun:
    session: Session
    options: AgentOptions
    created: bool
    mark: int  # len(session.messages) before this request's messages
    resumed: bool = False  # continues a run suspended for the client's tool results


def options_for(body: AgentRequest, runtime: AgentRuntime) -> AgentOptions:
    settings = runtime.settings
    return AgentOptions(
        max_turns=body.max_turns or settings.max_turns,
        max_tokens=body.token_budget() or DEFAULT_TURN_TOKENS,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        execution_timeout=body.execution_timeout or settings.execution_timeout,
        structure=body.structure(),
        policy=LoopPolicy(
            on_repeat=body.on_repeat or settings.agent_on_repeat,
            final_answer=settings.agent_final_answer if body.final_answer is None else body.final_answer,
            prompt_style=body.prompt_style or settings.agent_prompt_style,
            fenced_code=body.fenced_code or settings.agent_fenced_code,
            code_answer=body.code_answer or settings.agent_code_answer,
            unverified_answer=body.unverified_answer or settings.agent_unverified_answer,
        ),
    )


def _new_messages(messages: list[ChatMessage], continuing: bool) -> list[ChatMessage]:
    if not continuing:
        return messages
    last_assistant = max(
        (i for i, m in enumerate(messages) if m.role == "assistant"), default=-1
    )
    return messages[last_assistant + 1 :]


def _framed(message: dict[str, str], style: PromptStyle) -> dict[str, str]:
    """A user's message as the chosen prompt style frames a task."""
    if message["role"] != "user":
        return message
    return {**message, "content": task_message(message["content"], style)}


async def define_tools(session: Session, tools: list[ToolSpec]) -> None:
    """Run each tool's source in the session's sandbox; a broken tool is the caller's 400."""
    for tool in tools:
        if not tool.source:  # a host tool: its stub is defined already
            session.tools.append(tool)
            continue
        result = await asyncio.to_thread(session.executor.run, tool.source)
        if not result.ok:
            detail = (result.error or result.notice or "it did not run").strip().splitlines()[-1]
            raise InvalidRequest(
                f"tool '{tool.name}': its source failed in the sandbox: {detail}", param="tools"
            )
        session.tools.append(tool)


def _tool_results(messages: list[ChatMessage]) -> list[ChatMessage]:
    """The ``tool`` messages that end the request (after its last assistant message)."""
    trailing = _new_messages(messages, continuing=True)
    if trailing and all(m.role == "tool" for m in trailing):
        return trailing
    return []


async def resume_run(runtime: AgentRuntime, body: AgentRequest, results: list[ChatMessage]) -> PreparedRun:
    """A client's tool results: find the suspended run by tool_call_id and answer its call."""
    call_id = results[0].tool_call_id or ""
    session = runtime.sessions.waiting_for(call_id)
    if session is None:
        raise InvalidRequest(
            f"no agent run is waiting for tool_call_id '{call_id}' (it was answered already, or its "
            "session expired or was deleted)", param="messages")
    if body.session_id is not None and body.session_id != session.id:
        raise InvalidRequest(f"tool_call_id '{call_id}' belongs to another session", param="session_id")
    if session.lock.locked():
        raise SessionBusy(session.id)
    await session.lock.acquire()
    for message in results:
        if message.tool_call_id:
            session.bridge.resolve(message.tool_call_id, message.text())
    return PreparedRun(session, options_for(body, runtime), False, len(session.messages), resumed=True)


async def prepare_run(runtime: AgentRuntime, body: AgentRequest) -> PreparedRun:
    """Resolve or create the session, define tools, append the new messages; lock held."""
    results = _tool_results(body.messages)
    if results:
        return await resume_run(runtime, body, results)
    options = options_for(body, runtime)
    tools = body.source_tools()
    created = body.session_id is None
    if created:
        session = await runtime.sessions.create()
    else:
        session = runtime.sessions.get(body.session_id)  # type: ignore[arg-type]
        if session.lock.locked():
            raise SessionBusy(session.id)
    await session.lock.acquire()
    mark = len(session.messages)
    try:
        if session.run is not None:
            raise InvalidRequest(
                f"session {session.id} is waiting for the result of a tool call: send the tool message "
                "with its tool_call_id", param="messages")
        host_tools = session_tools.client_host_tools(session, body.function_tools())
        if created:
            host_tools = session_tools.mcp_host_tools(runtime.mcp, body.mcp_servers) + host_tools
        elif body.mcp_servers is not None:
            raise InvalidRequest("mcp_servers: a session's MCP servers are chosen when it is created",
                                 param="mcp_servers")
        host_specs = await session_tools.install(session, host_tools)
        if created:
            session.tools.extend(host_specs)
        else:
            tools = host_specs + tools  # listed in the system message that announces new tools
        await define_tools(session, tools)
        incoming = _new_messages(body.messages, continuing=not created)
        if not any(m.role == "user" for m in incoming):
            raise InvalidRequest("the request has no new user message for the agent", param="messages")
        if created:
            extra = "\n\n".join(m.text() for m in incoming if m.role in ("system", "developer"))
            session.messages.append(
                {"role": "system", "content": system_prompt(options.max_turns, session.tools, extra)}
            )
        elif tools:
            listing = system_prompt(options.max_turns, tools).split("\n\n", 1)[-1]
            session.messages.append({"role": "system", "content": listing})
        # The task that opens a session is framed as one; follow-ups are conversation.
        style = options.policy.prompt_style if created else "chat"
        session.messages.extend(
            _framed(m.as_prompt_message(), style) for m in incoming if m.role not in ("system", "developer")
        )
    except BaseException:
        session.lock.release()
        if created:
            runtime.sessions.delete(session.id)
        raise
    return PreparedRun(session, options, created, mark)


async def drive(runtime: AgentRuntime, run: PreparedRun) -> AsyncIterator[Any]:
    """Run the loop on a prepared session, record its steps, release the session at the end.

    The last event is an ``AgentDone``, or a ``ToolCallsPending`` when code called a client
    tool: the run stays suspended on the session until a request brings the tool's result.
    """
    session = run.session
    mark = run.mark
    if not run.resumed or session.run is None:
        announced = session.bridge.announced if session.bridge is not None else None
        session.run = SuspendableRun(
            run_agent(runtime.engine, session.messages, session.executor, run.options, len(session.steps)),
            announced,
        )
    suspendable = session.run
    try:
        async for event in suspendable.events():
            if isinstance(event, StepDone):
                session.steps.append(event.step)
            for observe in runtime.observers:
                observe(run, event)
            yield event
    except ContextOverflowError:
        del session.messages[mark:]  # the request never ran: leave the session as it was
        raise
    finally:
        if not suspendable.suspended:
            session.run = None
        session.lock.release()


def final_message(done: AgentDone) -> str:
    return done.message
