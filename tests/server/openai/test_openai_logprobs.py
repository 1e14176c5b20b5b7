"""logprobs / top_logprobs on chat and legacy completions: the real openai client, real
uvicorn, the embedded SmolLM2 on llama.cpp."""

from __future__ import annotations

import math

import openai
import pytest

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"
HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]


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


def test_no_logprobs_unless_asked(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, temperature=0)
    assert reply.choices[0].logprobs is None


def test_streamed_logprobs_equal_the_non_streamed(client: openai.OpenAI) -> None:
    args = {"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 0, "logprobs": True}
    whole = client.chat.completions.create(**args).choices[0].logprobs.content
    chunks = list(client.chat.completions.create(stream=True, **args))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in whole]
    assert all(t.top_logprobs == [] for t in streamed)


def test_a_stop_string_is_not_in_the_logprobs(client: openai.OpenAI) -> None:
    args = {"model": MODEL, "messages": HELLO, "max_tokens": 24, "temperature": 0, "logprobs": True}
    words = client.chat.completions.create(**args).choices[0].message.content.split()
    cut = client.chat.completions.create(stop=[" " + words[2]], **args).choices[0]
    assert cut.finish_reason == "stop"
    assert "".join(t.token for t in cut.logprobs.content) == cut.message.content


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


def test_top_logprobs_without_logprobs_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, top_logprobs=2)
    assert info.value.body["param"] == "top_logprobs"


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


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"echo": True}, "echo"), ({"best_of": 2}, "best_of"), ({"suffix": "end"}, "suffix"), ({"n": 2}, "n")],
)
def test_completions_refuse_fields_that_change_the_answer(client: openai.OpenAI, fields: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt="Hello", max_tokens=2, **fields)
    assert info.value.body["param"] == param
