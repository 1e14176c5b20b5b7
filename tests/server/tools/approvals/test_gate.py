"""The pending-approval gate (``server.tools.approvals.gate``) without HTTP or a sandbox: a
guarded tool whose real call is a plain future (the fake beside ``HostTool``), decided from the
event loop as the API decides, while a thread waits on the call as the sandbox's bridge does."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any

import pytest

from sandbox.host_calls import HostCallDenied
from server.tools.approvals.gate import DEADLINE_MARGIN_S, ApprovalPending, Approvals
from server.tools.toolbox import HostTool


class FakeTool:
    """A tool whose calls are futures the test answers; it records what was started."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], float, Future[Any]]] = []

    def host_tool(self) -> HostTool:
        def start(arguments: dict[str, Any], timeout: float) -> Future[Any]:
            future: Future[Any] = Future()
            self.calls.append((arguments, timeout, future))
            return future

        return HostTool("notes_write_note", "Append a note.", {"type": "object"}, start, origin="mcp:notes")


async def gate(timeout: float = 30.0) -> tuple[Approvals, asyncio.Queue[Any], FakeTool, HostTool, list[dict]]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    records: list[dict] = []
    approvals = Approvals("sess_test", queue, timeout=timeout, call_timeout=7.0, on_decision=records.append)
    approvals.owner = "key-a"
    fake = FakeTool()
    return approvals, queue, fake, approvals.guard(fake.host_tool(), "notes", "write_note"), records


async def call(tool: HostTool, budget: float = 600.0) -> Future[Any]:
    """Start a call as the bridge does: on a thread of its own, the budget plus its backstop."""
    return await asyncio.to_thread(tool.start, {"text": "hi"}, budget)


def test_a_guarded_call_waits_is_announced_and_runs_once_approved() -> None:
    async def scenario() -> None:
        approvals, queue, fake, tool, records = await gate()
        assert tool.timeout == float("inf"), "the bridge must wait as long as its budget allows"
        outer = await call(tool)
        pending = await asyncio.wait_for(queue.get(), 5)
        assert isinstance(pending, ApprovalPending) and pending.request.arguments == {"text": "hi"}
        assert not fake.calls and not outer.done()
        request = pending.request
        assert approvals.find(request.id, "key-b") is None, "another key sees the request"
        assert approvals.decide(request.id, True, None, key="key-b") is None
        assert approvals.decide(request.id, True, "fine", key="key-a") is request
        assert approvals.decide(request.id, False, None, key="key-a") is None, "decided twice"
        ((arguments, timeout, inner),) = fake.calls
        assert (arguments, timeout) == ({"text": "hi"}, 7.0)  # the tool's own timeout from here
        inner.set_result("noted")
        assert outer.result(timeout=5) == "noted"
        assert [(r["approve"], r["decided_by"], r["key"], r["requested_by"]) for r in records] == [
            (True, "api", "key-a", "key-a")
        ]

    asyncio.run(scenario())


def test_denied_timed_out_and_cancelled_calls_fail_as_permission_errors() -> None:
    async def scenario() -> None:
        approvals, queue, fake, tool, records = await gate(timeout=0.3)
        denied = await call(tool)
        request = (await queue.get()).request
        approvals.decide(request.id, False, "no", key="key-a")
        with pytest.raises(HostCallDenied, match="notes_write_note: the call was not approved: no"):
            denied.result(timeout=5)
        timed_out = await call(tool)
        await queue.get()
        with pytest.raises(HostCallDenied, match="no decision within 0.3 s"):
            await asyncio.wrap_future(timed_out)
        cancelled = await call(tool)
        await queue.get()
        approvals.cancel()
        with pytest.raises(HostCallDenied, match="the run was cancelled"):
            cancelled.result(timeout=5)
        abandoned = await call(tool)
        await queue.get()
        abandoned.cancel()  # the bridge gave up on it
        await asyncio.sleep(0)
        assert not approvals.pending and not fake.calls
        assert [r["decided_by"] for r in records] == ["api", "timeout", "cancelled", "cancelled"]

    asyncio.run(scenario())


def test_the_wait_ends_before_the_bridges_budget_and_a_refusing_gate_denies_at_once() -> None:
    async def scenario() -> None:
        approvals, queue, _, tool, _ = await gate(timeout=600)
        await call(tool, budget=DEADLINE_MARGIN_S + 0.2)
        assert (await queue.get()).request.timeout == pytest.approx(0.2)
        approvals.refusing = "sampled runs do not ask"
        refused = await call(tool)
        with pytest.raises(HostCallDenied, match="sampled runs do not ask"):
            refused.result(timeout=5)
        assert queue.empty()

    asyncio.run(scenario())


def test_a_late_answer_finds_the_decided_request_of_its_own_key_only() -> None:
    async def scenario() -> None:
        approvals, queue, _, tool, _ = await gate(timeout=0.1)
        await call(tool)
        request = (await queue.get()).request
        await asyncio.sleep(0.3)
        assert request.decision is not None and request.decision.by == "timeout"
        assert approvals.was_decided(request.id, "key-a") is request
        assert approvals.was_decided(request.id, "key-b") is None

    asyncio.run(scenario())
