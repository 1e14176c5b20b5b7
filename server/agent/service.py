"""Turning an agent request into a running loop over a session.

The request arrives in the agent's own terms (``RunRequest``: prompt messages, options,
tools); the API builds it from its body, so nothing here knows about HTTP.

Continuing a session: the session already holds the conversation, so only the request's
trailing non-assistant messages (what came after the last assistant message) are new.
That lets a chat UI resend its whole history, as OpenAI clients do, without duplicating it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from models.engine.api import ContextOverflowError
from server.agent.errors import AgentRequestError, SessionBusy
from server.agent.loop import AgentOptions, run_agent
from server.agent.policy import PromptStyle
from server.agent.prompts import ToolSpec, system_prompt, task_message
from server.agent.runtime import AgentRuntime
from server.agent.sessions import Session
from server.agent.steps import AgentDone, AgentEvent, Step, StepDone


@dataclass(frozen=True)
class RunRequest:
    """One agent request: its messages as prompt messages (``role`` is system, user,
    assistant or tool; ``content`` is text), the loop's options, tools to define, and the
    session to continue (None: a new one)."""

    messages: list[dict[str, str]]
    options: AgentOptions
    tools: list[ToolSpec] = field(default_factory=list)
    session_id: str | None = None


@dataclass
class PreparedRun:
    session: Session
    options: AgentOptions
    created: bool
    mark: int  # len(session.messages) before this request's messages

    def steps_of(self, done: AgentDone) -> list[Step]:
        """The steps this run added to its session (the last ``done.turns`` of them)."""
        return self.session.steps[-done.turns :] if done.turns else []

    def outcome(self, done: AgentDone) -> dict[str, Any]:
        """How the run ended, as plain JSON.

        One shape for everyone who reports a run (the ``agent`` field of a ``/v1/agent``
        answer, the last event of its stream, the audit log), so they cannot drift apart;
        ``usage`` uses OpenAI's field names.
        """
        return {
            "session_id": self.session.id,
            "finish_reason": done.finish_reason,
            "turns": done.turns,
            "final_message": done.message,
            "forced_answer": done.forced_answer,
            "usage": {
                "prompt_tokens": done.prompt_tokens,
                "completion_tokens": done.completion_tokens,
                "total_tokens": done.prompt_tokens + done.completion_tokens,
            },
            "error": done.error,
        }


def _new_messages(messages: list[dict[str, str]], continuing: bool) -> list[dict[str, str]]:
    if not continuing:
        return messages
    last_assistant = max(
        (i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1
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
        result = await asyncio.to_thread(session.executor.run, tool.source)
        if not result.ok:
            detail = (result.error or result.notice or "it did not run").strip().splitlines()[-1]
            raise AgentRequestError(
                f"tool '{tool.name}': its source failed in the sandbox: {detail}", param="tools"
            )
        session.tools.append(tool)


async def prepare_run(runtime: AgentRuntime, request: RunRequest) -> PreparedRun:
    """Resolve or create the session, define tools, append the new messages; lock held.

    Raises ``server.agent.errors`` types: an unknown, busy or one-too-many session, a tool
    whose source fails, or no new user message.
    """
    options, tools = request.options, request.tools
    created = request.session_id is None
    if request.session_id is None:
        session = await runtime.sessions.create()
    else:
        session = runtime.sessions.get(request.session_id)
        if session.lock.locked():
            raise SessionBusy(session.id)
    await session.lock.acquire()
    mark = len(session.messages)
    try:
        await define_tools(session, tools)
        incoming = _new_messages(request.messages, continuing=not created)
        if not any(m["role"] == "user" for m in incoming):
            raise AgentRequestError("the request has no new user message for the agent", param="messages")
        if created:
            extra = "\n\n".join(m["content"] for m in incoming if m["role"] == "system")
            session.messages.append(
                {"role": "system", "content": system_prompt(options.max_turns, session.tools, extra)}
            )
        elif tools:
            listing = system_prompt(options.max_turns, tools).split("\n\n", 1)[-1]
            session.messages.append({"role": "system", "content": listing})
        # The task that opens a session is framed as one; follow-ups are conversation.
        style = options.policy.prompt_style if created else "chat"
        session.messages.extend(_framed(m, style) for m in incoming if m["role"] != "system")
    except BaseException:
        session.lock.release()
        if created:
            runtime.sessions.delete(session.id)
        raise
    return PreparedRun(session, options, created, mark)


async def drive(runtime: AgentRuntime, run: PreparedRun) -> AsyncIterator[AgentEvent]:
    """Run the loop on a prepared session, record its steps, release the session at the end."""
    session = run.session
    mark = run.mark
    try:
        async for event in run_agent(
            runtime.engine, session.messages, session.executor, run.options, len(session.steps)
        ):
            if isinstance(event, StepDone):
                session.steps.append(event.step)
            for observe in runtime.observers:
                observe(run, event)
            yield event
    except ContextOverflowError:
        del session.messages[mark:]  # the request never ran: leave the session as it was
        raise
    finally:
        session.lock.release()

