"""``LoopWaker``: callbacks posted from another thread run on the event loop, in order."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from models.engine.wakeup import LoopWaker, loop_waker


def test_callbacks_from_another_thread_run_on_the_loop_in_order() -> None:
    async def main() -> tuple[list[int], set[int]]:
        loop = asyncio.get_running_loop()
        waker = loop_waker(loop)
        assert loop_waker(loop) is waker  # one per loop
        seen: list[int] = []
        threads: set[int] = set()
        done = asyncio.Event()

        def record(i: int) -> None:
            seen.append(i)
            threads.add(threading.get_ident())
            if i == 199:
                done.set()

        def produce() -> None:
            for i in range(200):
                waker.call(lambda i=i: record(i))

        worker = threading.Thread(target=produce)
        worker.start()
        await asyncio.wait_for(done.wait(), 30)
        worker.join()
        return seen, threads

    seen, threads = asyncio.run(main())
    assert seen == list(range(200))
    assert threads == {threading.main_thread().ident}


def test_a_closed_loop_refuses_and_its_sockets_close_with_it() -> None:
    loop = asyncio.new_event_loop()
    waker = LoopWaker(loop)
    reader, writer = waker._reader, waker._writer  # noqa: SLF001 - checking cleanup
    loop.close()
    with pytest.raises(RuntimeError):
        waker.call(lambda: None)
    del loop
    gc.collect()
    assert reader.fileno() == -1 and writer.fileno() == -1
