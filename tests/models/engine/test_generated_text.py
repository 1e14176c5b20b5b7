"""How every engine ends its text: stop strings held back and cut, held text released, the result.

``GeneratedText`` is what the llama.cpp engine, the scripted fake and the remote engine feed;
here it is fed by hand, and what reached the job's stream is compared with the result.
"""

from __future__ import annotations

import asyncio

from models.engine.api import GenerationRequest, GenerationResult
from models.engine.generated_text import GeneratedText
from models.engine.runner import QueuedGeneration


def run(
    pieces: list[str], stop: tuple[str, ...], *, tail: str = "", reported_stop: str | None = None
) -> tuple[list[bool], list[str], GenerationResult]:
    """Feed ``pieces`` until a stop string ends the text; return what each feed said, the
    deltas the stream received, and the result."""

    async def scenario() -> tuple[list[bool], list[str], GenerationResult]:
        job = QueuedGeneration(GenerationRequest(prompt="p", stop=stop), [1, 2])
        text = GeneratedText(job)
        said = []
        for piece in pieces:
            said.append(text.feed(piece))
            if said[-1]:
                break
        text.close(tail)
        result = text.result(
            "stop" if text.stop_string or reported_stop else "length",
            prompt_tokens=2,
            completion_tokens=len(said),
            reported_stop=reported_stop,
        )
        job.finish(result)
        deltas = [delta async for delta in job.stream()]
        return said, deltas, result

    return asyncio.run(scenario())


def test_a_stop_string_split_across_pieces_is_held_back_then_cut() -> None:
    said, deltas, result = run(["Let me run it <", "/exe", "cute> and more"], ("</execute>",))
    assert said == [False, False, True]
    assert deltas == ["Let me run it "]  # "<" and "</exe" were never streamed
    assert result.text == "Let me run it " and result.stop_string == "</execute>"
    assert result.finish_reason == "stop"


def test_held_text_is_released_once_it_cannot_begin_a_stop_string() -> None:
    said, deltas, result = run(["a <", "b", " c"], ("<execute>",))
    assert said == [False, False, False]
    assert deltas == ["a ", "<b", " c"]
    assert result.text == "a <b c" and result.stop_string is None


def test_the_earliest_stop_string_wins_and_later_text_is_dropped() -> None:
    _, deltas, result = run(["x<solution>y<execute>z"], ("<execute>", "<solution>"))
    assert deltas == ["x"]
    assert result.text == "x" and result.stop_string == "<solution>"


def test_text_held_at_the_end_is_released_with_the_tail() -> None:
    said, deltas, result = run(["done <"], ("<|im_end|>",), tail="\ufffd")
    assert said == [False]
    assert "".join(deltas) == result.text == "done <\ufffd"
    assert result.stop_string is None and result.finish_reason == "length"


def test_a_stop_the_backend_reports_is_named_and_held_text_is_kept() -> None:
    # The backend cut its stop string itself: every streamed character is real output.
    _, deltas, result = run(["answer <"], ("</solution>",), reported_stop="</solution>")
    assert "".join(deltas) == result.text == "answer <"
    assert result.stop_string == "</solution>"


def test_no_stop_strings_passes_text_through_and_timings_are_ordered() -> None:
    said, deltas, result = run(["one", " two"], ())
    assert said == [False, False] and deltas == ["one", " two"]
    assert result.prompt_tokens == 2 and result.completion_tokens == 2
    assert result.queued_s >= 0 and 0 <= result.time_to_first_token_s <= result.total_s
