"""logprobs / top_logprobs on chat and legacy completions: the real openai client, real
uvicorn, the embedded SmolLM2 on llama.cpp."""

from __future__ import annotations

import math

import openai
import pytest

from models.engine.api import TokenLogprob
from server.openai.logprobs import StreamedLogprobs, completion_logprobs

MODEL = "smollm2-135m"
HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]


@pytest.mark.model
def test_chat_logprobs_cover_the_text_and_greedy_picks_the_top(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=16, temperature=0, logprobs=True, top_logprobs=3
    )
    choice = reply.choices[0]
    content = choice.logprobs.content
    assert len(content) == reply.usage.completion_tokens
    assert "".join(t.token for t in content) == choice.message.content
    for entry in content:
        assert entry.logprob <= 0
        assert bytes(entry.bytes).decode() == entry.token
        assert len(entry.top_logprobs) == 3
        ranked = [t.logprob for t in entry.top_logprobs]
        assert ranked == sorted(ranked, reverse=True)
        assert sum(math.exp(lp) for lp in ranked) <= 1.0001
        assert entry.top_logprobs[0].token == entry.token  # temperature 0: the argmax
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)


@pytest.mark.model
def test_no_logprobs_unless_asked(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, temperature=0)
    assert reply.choices[0].logprobs is None


@pytest.mark.model
def test_streamed_logprobs_equal_the_non_streamed(client: openai.OpenAI) -> None:
    args = {"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 0, "logprobs": True}
    whole = client.chat.completions.create(**args).choices[0].logprobs.content
    chunks = list(client.chat.completions.create(stream=True, **args))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in whole]
    assert all(t.top_logprobs == [] for t in streamed)
    # Each content delta carries its own tokens, as OpenAI's streams do (not all at the end).
    deltas = [c.choices[0] for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 1
    for choice in deltas:
        assert "".join(t.token for t in choice.logprobs.content) == choice.delta.content


@pytest.mark.model
def test_streamed_logprobs_leave_out_a_stop_string(client: openai.OpenAI) -> None:
    args = {"model": MODEL, "messages": HELLO, "max_tokens": 24, "temperature": 0, "logprobs": True}
    words = client.chat.completions.create(**args).choices[0].message.content.split()
    chunks = list(client.chat.completions.create(stop=[" " + words[2]], stream=True, **args))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert "".join(t.token for t in streamed) == text
    assert words[2] not in text.split()


def test_streamed_logprobs_follow_the_text_they_complete() -> None:
    """Without a model: a delta gets only the tokens its text covers (a split UTF-8
    character, text held back), the final chunk the rest of the exact final list."""
    euro = "€".encode()  # three bytes, generated as two tokens

    class Handle:
        token_logprobs = [TokenLogprob(b"a", -0.1), TokenLogprob(euro[:1], -0.2), TokenLogprob(euro[1:], -0.3)]

    tokens = StreamedLogprobs(Handle())  # type: ignore[arg-type]
    assert [e.piece for e in tokens.take("a")] == [b"a"]
    assert tokens.take("") == []  # the character's first byte arrived; its text did not
    Handle.token_logprobs.append(TokenLogprob(b"<", -0.4))  # held: may start a stop string
    assert [e.piece for e in tokens.take("€")] == [euro[:1], euro[1:]]
    # text_offset counts as the non-streamed list does: each piece decoded alone ("a", one
    # replacement character for the lead byte, one per continuation byte).
    assert tokens.chars == 4 == completion_logprobs(Handle.token_logprobs[:4])["text_offset"][-1]
    assert tokens.rest(Handle.token_logprobs[:3]) == []  # "<" began the stop string: not in the final list
    assert tokens.rest(None) is None


@pytest.mark.model
def test_a_stop_string_is_not_in_the_logprobs(client: openai.OpenAI) -> None:
    args = {"model": MODEL, "messages": HELLO, "max_tokens": 24, "temperature": 0, "logprobs": True}
    words = client.chat.completions.create(**args).choices[0].message.content.split()
    cut = client.chat.completions.create(stop=[" " + words[2]], **args).choices[0]
    assert cut.finish_reason == "stop"
    assert "".join(t.token for t in cut.logprobs.content) == cut.message.content


@pytest.mark.model
def test_logprobs_with_a_grammar(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        max_tokens=40,
        temperature=0,
        logprobs=True,
        response_format={"type": "json_object"},
    )
    assert "".join(t.token for t in reply.choices[0].logprobs.content) == reply.choices[0].message.content


@pytest.mark.model
def test_top_logprobs_without_logprobs_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, top_logprobs=2)
    assert info.value.body["param"] == "top_logprobs"


@pytest.mark.model
def test_completions_logprobs_in_the_legacy_shape(client: openai.OpenAI) -> None:
    prompt = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
    reply = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0, logprobs=2)
    choice = reply.choices[0]
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == choice.text
    assert len(logprobs.token_logprobs) == len(logprobs.tokens) == len(logprobs.top_logprobs)
    pairs = zip(logprobs.top_logprobs, logprobs.token_logprobs, strict=True)
    assert all(len(top) <= 2 and lp <= 0 for top, lp in pairs)
    assert logprobs.text_offset[0] == 0
    assert logprobs.text_offset[-1] == len(choice.text) - len(logprobs.tokens[-1])


@pytest.mark.model
def test_completions_stream_each_piece_with_its_tokens(client: openai.OpenAI) -> None:
    prompt = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
    args = {"model": MODEL, "prompt": prompt, "max_tokens": 8, "temperature": 0, "logprobs": 2}
    whole = client.completions.create(**args).choices[0].logprobs
    chunks = [c.choices[0] for c in client.completions.create(stream=True, **args) if c.choices]
    pieces = [c for c in chunks if c.text]
    assert len(pieces) > 1
    for choice in pieces:
        assert "".join(choice.logprobs.tokens) == choice.text
    streamed = [c.logprobs for c in chunks if c.logprobs]
    assert [t for lp in streamed for t in lp.tokens] == whole.tokens
    assert [o for lp in streamed for o in lp.text_offset] == whole.text_offset
    assert [lp for s in streamed for lp in s.token_logprobs] == whole.token_logprobs


@pytest.mark.model
@pytest.mark.parametrize(
    ("fields", "param"),
    [({"echo": True}, "echo"), ({"best_of": 2}, "best_of"), ({"suffix": "end"}, "suffix"), ({"n": 2}, "n")],
)
@pytest.mark.model
def test_completions_refuse_fields_that_change_the_answer(client: openai.OpenAI, fields: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt="Hello", max_tokens=2, **fields)
    assert info.value.body["param"] == param
