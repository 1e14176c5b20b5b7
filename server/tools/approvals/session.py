"""Putting a new session's MCP tools behind approvals, as the config and the request say.

Called once, when a session gets its MCP tools (``server.agent.service``): each tool the
request may use is kept (``allowed_tools`` narrows), and each that needs approval
(`rules.needs_approval`) is wrapped by the session's `Approvals`, which it creates. The
requests are announced on the same queue as the client's tool calls, so a session that
guards tools gets a ``ClientToolBridge`` for its queue even without client tools.

No MCP here: the servers' tools come in as `ToolFacts` (``server.mcp.manager.McpTool`` is one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from server.tools.approvals.gate import Approvals, OnDecision
from server.tools.approvals.rules import Narrowing, Rule, needs_approval
from server.tools.client_calls import ClientToolBridge
from server.tools.toolbox import HostTool


class ToolFacts(Protocol):
    """What decides whether one MCP tool asks: its server, names and annotations."""

    @property
    def server(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def function(self) -> str: ...
    @property
    def read_only(self) -> bool: ...
    @property
    def require_approval(self) -> Rule | None: ...


class ApprovalSettings(Protocol):
    """The operator's approval settings and the MCP servers' tools (``McpManager``)."""

    approval_timeout: float
    call_timeout: float
    on_decision: OnDecision | None

    def tools(self, servers: Sequence[str] | None = None) -> Sequence[ToolFacts]: ...


def guard(
    session: Any,
    tools: Sequence[HostTool],
    source: ApprovalSettings | None,
    narrowing: Mapping[str, Narrowing] | None,
) -> list[HostTool]:
    """`tools` (MCP host tools) as this session gets them: left out when the request's
    ``allowed_tools`` leaves them out, behind an approval when one is needed."""
    if source is None or not tools:
        return list(tools)
    facts = {fact.function: fact for fact in source.tools()}
    kept: list[HostTool] = []
    for tool in tools:
        fact = facts.get(tool.function)
        if fact is None:  # not an MCP tool: nothing to decide here
            kept.append(tool)
            continue
        narrowed = None if narrowing is None else narrowing.get(fact.server)
        if narrowed is not None and not narrowed.allows(fact.name, fact.read_only):
            continue
        if needs_approval(fact.require_approval, narrowed, fact.name, fact.read_only):
            kept.append(approvals_of(session, source).guard(tool, fact.server, fact.name))
        else:
            kept.append(tool)
    return kept


def approvals_of(session: Any, source: ApprovalSettings) -> Approvals:
    """The session's `Approvals`, made on first use (on the event loop)."""
    if session.approvals is None:
        if session.bridge is None:
            session.bridge = ClientToolBridge(asyncio.get_running_loop())
        session.approvals = Approvals(
            session.id,
            session.bridge.announced,
            timeout=source.approval_timeout,
            call_timeout=source.call_timeout,
            on_decision=source.on_decision,
        )
    approvals: Approvals = session.approvals
    return approvals


def watch_cancel(session: Any) -> None:
    """Deny the session's pending requests whenever its sandbox cancels its calls (a run
    cancelled, the sandbox closing): hooked on the session's toolbox once."""
    approvals = session.approvals
    toolbox = session.executor.host_calls
    if approvals is None or not hasattr(toolbox, "on_cancel"):
        return
    if approvals.cancel not in toolbox.cancel_callbacks:
        toolbox.on_cancel(approvals.cancel)
