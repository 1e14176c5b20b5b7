"""``QueuedGeneration``'s hand-off of text to the event loop, with and without a wake interval.

The interval only decides *when* the event loop is woken; these tests check that no text is
lost, reordered or stranded: the first text goes at once, held text goes with ``flush`` or
with the end of the generation. Nothing here is timed: the interval is an hour or zero.
"""

from __future__ import annotations

import asyncio
import threading

from models.engine.api import GenerationRequest, GenerationResult
from models.engine.runner import QueuedGeneration

HOUR = 3600.0


def result() -> GenerationResult:
    return GenerationResult(text="abc", finish_reason="stop", prompt_tokens=1, completion_tokens=3)


async def drain(job: QueuedGeneration) -> list[str]:
    return [piece async for piece in job.stream()]


async def delivered(job: QueuedGeneration) -> list[str]:
    """What ``stream()`` holds right now, without waiting for more."""
    await asyncio.sleep(0)
    await asyncio.sleep(0.05)  # let the wake-up byte reach the loop; not an assertion on time
    pieces = []
    while not job._events.empty():  # noqa: SLF001 - looking, not consuming the stream
        pieces.append(job._events.get_nowait()[1])  # noqa: SLF001
    return pieces


def on_thread(action) -> None:  # noqa: ANN001 - a callable run as the owner thread would
    worker = threading.Thread(target=action)
    worker.start()
    worker.join()


def test_held_text_goes_with_flush_and_with_the_end() -> None:
    async def main() -> None:
        job = QueuedGeneration(GenerationRequest(prompt="p"), [1], wake_interval_s=HOUR)
        on_thread(lambda: job.emit("a"))
        assert await delivered(job) == ["a"]  # the first text at once
        on_thread(lambda: (job.emit("b"), job.emit("c")))
        assert await delivered(job) == []  # held: the last wake-up is younger than an hour
        on_thread(job.flush)
        assert await delivered(job) == ["b", "c"]
        on_thread(lambda: (job.emit("d"), job.finish(result())))
        assert await drain(job) == ["d"]
        assert job.result.text == "abc"

    asyncio.run(main())


def test_without_an_interval_every_text_is_handed_over() -> None:
    async def main() -> None:
        job = QueuedGeneration(GenerationRequest(prompt="p"), [1], wake_interval_s=0.0)
        for piece in "xyz":
            on_thread(lambda piece=piece: job.emit(piece))
            assert await delivered(job) == [piece]
        on_thread(lambda: job.finish(result()))
        assert await drain(job) == []

    asyncio.run(main())
