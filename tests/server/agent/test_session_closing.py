"""Closing sessions never runs on the event loop (issue 34).

A session's worker can take seconds to close: its tree must die, a run in flight must notice,
its workspace (which the code filled as it liked) must be removed. The idle reaper, a delete
and a refused request run on the event loop, so each hands the close to a thread of its own:
here a close that takes 2 s must not hold up the loop by more than a tick.
"""

from __future__ import annotations

import asyncio
import threading
import time

from sandbox.fake_executor import ScriptedExecutor
from server.agent.sessions import SessionStore

CLOSE_S = 2.0


class SlowToClose(ScriptedExecutor):
    """An executor whose close takes `CLOSE_S`, as a hostile worker's could."""

    def __init__(self) -> None:
        super().__init__()
        self.finished = threading.Event()

    def close(self) -> None:
        time.sleep(CLOSE_S)
        self.finished.set()


async def _loop_stall_during(action: object) -> float:
    """The longest the loop went without running a 10 ms ticker while `action()` ran."""
    worst, last = 0.0, time.monotonic()
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst, last
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst, last = max(worst, now - last), now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    result = action()  # type: ignore[operator]
    if asyncio.iscoroutine(result):
        await result
    await asyncio.sleep(0.05)
    done.set()
    await task
    return worst


def test_expiring_idle_sessions_closes_them_off_the_loop() -> None:
    async def scenario() -> None:
        executors: list[SlowToClose] = []

        def make() -> SlowToClose:
            executors.append(SlowToClose())
            return executors[-1]

        store = SessionStore(make, max_sessions=4, ttl_s=0.05)
        for _ in range(3):
            await store.create()
        await asyncio.sleep(0.1)
        stall = await _loop_stall_during(store.expire_idle)
        assert stall < 0.5, f"the event loop stalled {stall:.2f} s while idle sessions closed"
        assert len(store) == 0
        assert all(e.finished.wait(CLOSE_S + 3) for e in executors)  # closed, on their own threads

    asyncio.run(scenario())


def test_deleting_a_session_closes_it_off_the_loop() -> None:
    async def scenario() -> None:
        executor = SlowToClose()
        store = SessionStore(lambda: executor, max_sessions=1, ttl_s=60)
        session = await store.create()
        stall = await _loop_stall_during(lambda: store.delete(session.id))
        assert stall < 0.5, f"the event loop stalled {stall:.2f} s on a delete"
        assert executor.finished.wait(CLOSE_S + 3)
        assert len(store) == 0

    asyncio.run(scenario())
