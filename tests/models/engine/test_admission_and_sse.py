"""Two small pieces every engine (and the CLI) shares: context-window admission, SSE reading."""

from __future__ import annotations

import pytest

from models.engine.admission import fit_context
from models.engine.api import ContextOverflowError, GenerationRequest
from models.engine.sse import MalformedEventError, sse_json


# -- admission ------------------------------------------------------------------------------
def test_a_request_that_fits_is_unchanged_and_no_max_tokens_becomes_the_room_left() -> None:
    request = GenerationRequest(prompt="p", max_tokens=10)
    assert fit_context(request, 90, 100) is request
    assert fit_context(GenerationRequest(prompt="p"), 90, 100).max_tokens == 10


@pytest.mark.parametrize(
    ("max_tokens", "prompt_tokens", "named_max"),
    [(11, 90, 11), (None, 100, 1), (None, 120, 1), (1, 100, 1)],
)
def test_over_the_window_is_refused_with_the_numbers(
    max_tokens: int | None, prompt_tokens: int, named_max: int
) -> None:
    with pytest.raises(ContextOverflowError) as refused:
        fit_context(GenerationRequest(prompt="p", max_tokens=max_tokens), prompt_tokens, 100)
    assert (refused.value.prompt_tokens, refused.value.max_tokens, refused.value.context_length) == (
        prompt_tokens,
        named_max,
        100,
    )
    assert f"{prompt_tokens} tokens" in str(refused.value) and "100 tokens" in str(refused.value)


def test_estimated_counts_never_refuse_and_leave_at_least_one_token() -> None:
    assert fit_context(GenerationRequest(prompt="p"), 120, 100, enforce=False).max_tokens == 1
    assert fit_context(GenerationRequest(prompt="p", max_tokens=50), 90, 100, enforce=False).max_tokens == 50


# -- SSE ------------------------------------------------------------------------------------
def test_sse_yields_each_data_object_until_done() -> None:
    lines = [
        ": a comment",
        "event: message",
        'data: {"a": 1}',
        "",
        'data:{"b": [2]}',
        "data: [DONE]",
        'data: {"after": "done"}',
    ]
    assert list(sse_json(lines)) == [{"a": 1}, {"b": [2]}]


def test_sse_without_done_ends_with_the_lines() -> None:
    assert list(sse_json(['data: {"only": true}'])) == [{"only": True}]


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", '"text"'])
def test_sse_refuses_a_data_line_that_is_not_a_json_object(data: str) -> None:
    events = sse_json(['data: {"ok": 1}', f"data: {data}"])
    assert next(events) == {"ok": 1}
    with pytest.raises(MalformedEventError, match="malformed stream event") as refused:
        next(events)
    assert refused.value.data == data
