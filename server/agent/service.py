"""Turning an agent request into a running loop over a session.

The request arrives in the agent's own terms (``RunRequest``: prompt messages, options,
tools); the API builds it from its body, so nothing here knows about HTTP. Refusals are
``server.agent.errors`` types; the API gives them their status codes.

Continuing a session: the session already holds the conversation, so only the request's
trailing non-assistant messages (what came after the last assistant message) are new.
That lets a chat UI resend its whole history, as OpenAI clients do, without duplicating it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from models.engine.api import ContextOverflowError
from sandbox.executor import on_own_thread
from server.agent.errors import AgentRequestError, SessionBusy
from server.agent.loop import AgentOptions, run_agent
from server.agent.options import PromptStyle
from server.agent.prompts import system_prompt, task_message
from server.agent.runtime import AgentRuntime
from server.agent.sessions import Session
from server.agent.steps import AgentDone, Step, StepDone
from server.agent.suspend import SuspendableRun
from server.tools import session_tools
from server.tools.approvals import session as approvals
from server.tools.approvals.rules import Narrowing
from server.tools.client_calls import ClientFunction
from server.tools.toolbox import ToolSpec


@dataclass(frozen=True)
class RunRequest:
    """One agent request in the agent's terms.

    ``messages`` are prompt messages (``role``: system, user, assistant or tool; ``content``:
    text; a tool result also has the ``tool_call_id`` it answers). ``tools`` are Python tools
    to define by their source, ``functions`` the client's function tools, ``mcp_servers``
    the configured MCP servers a new session gets (None: all), ``session_id`` the session
    to continue (None: a new one).
    """

    messages: list[dict[str, str]]
    options: AgentOptions
    tools: list[ToolSpec] = field(default_factory=list)
    functions: list[ClientFunction] = field(default_factory=list)
    mcp_servers: list[str] | None = None
    #: Per MCP server, what this request narrows (``server.tools.approvals.rules``: fewer tools,
    #: more approvals; never fewer approvals than the config's). None: nothing.
    mcp_narrowing: dict[str, Narrowing] | None = None
    session_id: str | None = None
    #: The run's id in the store's records (the API's answer id; None: a new one) and the
    #: API key (digest) it is recorded for, the only one that may read it back.
    run_id: str | None = None
    owner: str = ""


def new_run_id() -> str:
    return f"run_{uuid.uuid4().hex[:20]}"


@dataclass
class PreparedRun:
    session: Session
    options: AgentOptions
    created: bool
    mark: int  # len(session.messages) before this request's messages
    resumed: bool = False  # continues a run suspended for the client's tool results
    #: The run's id in the store's records (``server.recording``), and whose record it is.
    record_id: str = field(default_factory=new_run_id)
    owner: str = ""
    #: End the events at an approval request, the run suspended (a request that answers at
    #: once); else they go on while the call waits (a stream, a background run).
    pause_on_approval: bool = False
    #: Why this run's calls that need approval are denied at once (None: they ask).
    refuse_approvals: str | None = None

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
            "run_id": self.record_id,  # the run's record: GET /v1/agent/runs/{run_id}
            "finish_reason": done.finish_reason,
            "turns": done.turns,
            "final_message": done.message,
            "forced_answer": done.forced_answer,
            "usage": done.usage.payload(),
            "error": done.error,
        }


def _new_messages(messages: list[dict[str, str]], continuing: bool) -> list[dict[str, str]]:
    if not continuing:
        return messages
    last_assistant = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    return messages[last_assistant + 1 :]


def _framed(message: dict[str, str], style: PromptStyle) -> dict[str, str]:
    """A message as the session keeps it (role and content); a user's is framed as the
    chosen prompt style frames a task."""
    content = task_message(message["content"], style) if message["role"] == "user" else message["content"]
    return {"role": message["role"], "content": content}


async def _install_host_tools(
    runtime: AgentRuntime, session: Session, request: RunRequest, created: bool
) -> list[ToolSpec]:
    """The session's MCP tools (when it is created) and the client's function tools, defined
    in its sandbox; their specs. What ``server.tools`` refuses is this request's error."""
    try:
        host_tools = session_tools.client_host_tools(session, request.functions)
        if created:
            mcp_tools = session_tools.mcp_host_tools(runtime.mcp, request.mcp_servers)
            host_tools = approvals.guard(session, mcp_tools, runtime.mcp, request.mcp_narrowing) + host_tools
        elif request.mcp_servers is not None:
            raise AgentRequestError(
                "mcp_servers: a session's MCP servers are chosen when it is created", param="mcp_servers"
            )
        specs = await session_tools.install(session, host_tools)
        approvals.watch_cancel(session)  # a cancelled run denies its pending approvals
        return specs
    except session_tools.ToolRequestError as exc:
        raise AgentRequestError(str(exc), param=exc.param) from exc


async def define_tools(session: Session, tools: list[ToolSpec]) -> None:
    """Run each tool's source in the session's sandbox; a broken tool is the caller's to fix.

    No run exists yet to announce a call of the client's tools, so while a source runs such a
    call fails at once (it once parked forever, with the session locked and its id unknown).
    """
    bridge = session.bridge
    if bridge is not None:
        bridge.refusing = "while a tool's source is being defined: no run can pass the call to the client"
    try:
        for tool in tools:
            if not tool.source:  # a host tool: its stub is defined already
                session.tools.append(tool)
                continue
            result = await on_own_thread(session.executor.run, tool.source, name="sandbox-define")
            if not result.ok:
                detail = (result.error or result.notice or "it did not run").strip().splitlines()[-1]
                raise AgentRequestError(
                    f"tool '{tool.name}': its source failed in the sandbox: {detail}", param="tools"
                )
            session.tools.append(tool)
    finally:
        if bridge is not None:
            bridge.refusing = None


def _tool_results(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The ``tool`` messages that end the request (after its last assistant message)."""
    trailing = _new_messages(messages, continuing=True)
    if trailing and all(m["role"] == "tool" for m in trailing):
        return trailing
    return []


async def resume_run(runtime: AgentRuntime, request: RunRequest, results: list[dict[str, str]]) -> PreparedRun:
    """A client's tool results: find the suspended run by tool_call_id and answer its call."""
    call_id = results[0].get("tool_call_id", "")
    session = runtime.sessions.waiting_for(call_id)
    if session is None:
        raise AgentRequestError(
            f"no agent run is waiting for tool_call_id '{call_id}' (it was answered already, or its "
            "session expired or was deleted)",
            param="messages",
        )
    if request.session_id is not None and request.session_id != session.id:
        raise AgentRequestError(f"tool_call_id '{call_id}' belongs to another session", param="session_id")
    if session.lock.locked():
        raise SessionBusy(session.id)
    await session.lock.acquire()
    for message in results:
        if message.get("tool_call_id"):
            session.bridge.resolve(message["tool_call_id"], message["content"])
    return PreparedRun(
        session, request.options, False, len(session.messages), True, request.run_id or new_run_id(), request.owner
    )


async def resume_suspended(runtime: AgentRuntime, session: Session, request: RunRequest) -> PreparedRun:
    """Go on with a run suspended at an approval request (its decision made): lock held."""
    if session.run is None or not session.run.suspended:
        raise AgentRequestError(f"session {session.id} has no run waiting to go on", param="session_id")
    if session.lock.locked():
        raise SessionBusy(session.id)
    await session.lock.acquire()
    return PreparedRun(
        session, request.options, False, len(session.messages), True, request.run_id or new_run_id(), request.owner
    )


async def prepare_run(runtime: AgentRuntime, request: RunRequest) -> PreparedRun:
    """Resolve or create the session, define tools, append the new messages; lock held.

    Raises ``server.agent.errors`` types: an unknown, busy or one-too-many session, a tool
    that cannot be defined, tool results nobody waits for, or no new user message.
    """
    results = _tool_results(request.messages)
    if results:
        return await resume_run(runtime, request, results)
    options, tools = request.options, list(request.tools)
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
        if session.run is not None:
            raise AgentRequestError(
                f"session {session.id} is waiting for the result of a tool call (send the tool message "
                "with its tool_call_id) or for an approval (decide it)",
                param="messages",
            )
        host_specs = await _install_host_tools(runtime, session, request, created)
        if created:
            session.tools.extend(host_specs)
        else:
            tools = host_specs + tools  # listed in the system message that announces new tools
        await define_tools(session, tools)
        incoming = _new_messages(request.messages, continuing=not created)
        if not any(m["role"] == "user" for m in incoming):
            raise AgentRequestError("the request has no new user message for the agent", param="messages")
        if created:
            extra = "\n\n".join(m["content"] for m in incoming if m["role"] == "system")
            prompt = system_prompt(options.max_turns, session.tools, extra, options.policy.code_plan)
            session.messages.append({"role": "system", "content": prompt})
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
    return PreparedRun(session, options, created, mark, False, request.run_id or new_run_id(), request.owner)


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
    suspendable.pause_on_approval = run.pause_on_approval
    if session.approvals is not None:
        session.approvals.owner = run.owner  # only this key may decide what the run asks
        session.approvals.refusing = run.refuse_approvals
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
