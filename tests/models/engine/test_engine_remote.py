"""``--engine openai`` end to end: a front codeact-server whose engine is another one.

The backend is our own server on the embedded model (no vLLM or llama-server runs here);
the front runs a ``RemoteEngine`` pointing at its ``/v1/completions``, with its own queue,
sessions and sandbox. Also ``/v1/completions`` itself on the real engine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from models.engine.api import GenerationRequest
from models.engine.chat_format import render_chatml
from models.engine.remote import RemoteEngine
from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"
HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]
YES_NO = 'root ::= "yes" | "no"'
LONG = {"role": "user", "content": "Count from 1 to 2000, one number per line."}
GEN_S = 60  # a generation's HTTP timeout: httpx's default 5 s ran out on a loaded 2-core machine


@pytest.fixture(scope="module")
def backend(real_engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(Settings(sandbox_pool_size=0), real_engine, close_engine=False)) as live:
        yield live


@pytest.fixture(scope="module")
def remote(backend: LiveServer) -> Iterator[RemoteEngine]:
    engine = RemoteEngine(backend.url, max_queue=1, aliases=("default",))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def front(remote: RemoteEngine) -> Iterator[LiveServer]:
    settings = Settings(sandbox_pool_size=1, execution_timeout=20)
    with LiveServer(create_app(settings, remote, close_engine=False)) as live:
        yield live


def openai_client(server: LiveServer, path: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + path, api_key="unused", max_retries=0)


# -- /v1/completions on the real engine -------------------------------------------------------
def test_completions_endpoint_shape_stream_and_stop_reason(backend: LiveServer, real_engine) -> None:
    prompt = render_chatml(HELLO)
    args = {"model": MODEL, "prompt": prompt, "max_tokens": 24, "temperature": 0, "seed": 1}
    with openai_client(backend) as client:
        whole = client.completions.create(**args)
        assert whole.object == "text_completion"
        assert whole.choices[0].text.strip()
        assert whole.choices[0].finish_reason in {"stop", "length"}
        assert whole.usage.prompt_tokens == real_engine.count_tokens(prompt)
        assert 0 < whole.usage.completion_tokens <= 24
        chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **args))
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    with httpx.stream("POST", backend.url + "/v1/completions", json={**args, "stream": True}, timeout=GEN_S) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    # A stop string ends the text (not included) and is reported as stop_reason.
    stop = whole.choices[0].text.split()[1]
    body = httpx.post(backend.url + "/v1/completions", json={**args, "stop": [stop]}, timeout=GEN_S).json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["stop_reason"] == stop
    assert stop not in body["choices"][0]["text"]


def test_completions_grammar_is_honoured(backend: LiveServer) -> None:
    prompt = render_chatml([{"role": "user", "content": "Is the sea wet? Answer yes or no."}])
    for seed in range(3):
        body = {"model": MODEL, "prompt": prompt, "max_tokens": 8, "temperature": 1.0, "seed": seed, "grammar": YES_NO}
        reply = httpx.post(backend.url + "/v1/completions", json=body, timeout=GEN_S).json()
        assert reply["choices"][0]["text"] in {"yes", "no"}


# -- a front server on a RemoteEngine ---------------------------------------------------------
def test_health_shows_the_remote_backend(front: LiveServer, backend: LiveServer) -> None:
    body = httpx.get(front.url + "/health").json()
    assert body["backend"] == f"remote:{backend.url}"
    assert body["model"] == MODEL
    assert body["grammar"] == "llama-server"
    assert body["token_counts"] == "exact"  # codeact-server answers /tokenize as llama-server does
    assert body["context_length"] == 2048  # read from the backend's /health
    assert httpx.get(backend.url + "/health").json()["grammar"] == "gbnf"


def test_chat_through_the_front_matches_the_backend(front: LiveServer, backend: LiveServer) -> None:
    args = {"model": MODEL, "messages": HELLO, "max_tokens": 24, "temperature": 0, "seed": 1}
    with openai_client(backend) as direct, openai_client(front) as via:
        expected = direct.chat.completions.create(**args)
        reply = via.chat.completions.create(**args)
        chunks = list(via.chat.completions.create(stream=True, **args))
    assert reply.choices[0].message.content == expected.choices[0].message.content
    assert reply.choices[0].finish_reason == expected.choices[0].finish_reason
    assert reply.usage.prompt_tokens == expected.usage.prompt_tokens  # the backend's usage
    assert reply.usage.completion_tokens == expected.usage.completion_tokens
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}


def test_grammar_travels_to_the_backend(front: LiveServer, remote: RemoteEngine) -> None:
    prompt = render_chatml([{"role": "user", "content": "Is the sea wet? Answer yes or no."}])
    for seed in range(3):
        body = {"model": MODEL, "prompt": prompt, "max_tokens": 8, "temperature": 1.0, "seed": seed, "grammar": YES_NO}
        reply = httpx.post(front.url + "/v1/completions", json=body, timeout=GEN_S).json()
        assert reply["choices"][0]["text"] in {"yes", "no"}
    request = GenerationRequest(prompt="x", max_tokens=4, grammar=YES_NO)
    assert remote._body(request)["grammar"] == YES_NO  # noqa: SLF001


def test_grammar_styles_shape_the_request(backend: LiveServer) -> None:
    request = GenerationRequest(prompt="x", max_tokens=4, stop=("</execute>",), grammar=YES_NO)
    vllm = RemoteEngine(backend.url, grammar_style="vllm", model_id="served-name")
    none = RemoteEngine(backend.url, grammar_style="none")
    try:
        body = vllm._body(request)  # noqa: SLF001
        assert body["guided_grammar"] == YES_NO and "grammar" not in body
        assert body["model"] == "served-name"
        assert "stop" not in body  # matched here: llama-server strips stop strings unnamed
        body = none._body(request)  # noqa: SLF001
        assert "grammar" not in body and "guided_grammar" not in body
        assert none.info.grammar_support == "none"
    finally:
        vllm.close()
        none.close()


def test_agent_through_the_front_is_well_formed(front: LiveServer) -> None:
    with openai_client(front, "/v1/agent") as client:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Use the <execute> tag to run: print(7 * 6)"}],
            temperature=0,
            seed=0,
            max_tokens=160,
            extra_body={"max_turns": 2},
        )
    agent = reply.model_extra["agent"]
    assert agent["finish_reason"] in {"solution", "max_turns", "length"}
    assert agent["steps"]
    for position, step in enumerate(agent["steps"]):
        assert step["phases"][0] == ("answer" if step["forced"] == "last_turn" else "thought")
        assert step["action"]["type"] in {"execute", "solution"}
        if step["generation_finish"] == "length":
            assert position == len(agent["steps"]) - 1
        elif step["action"]["type"] == "execute":
            assert step["observation"]["message"].startswith("Observation:\n")
    assert reply.usage.completion_tokens == sum(s["tokens"]["completion"] for s in agent["steps"])


def test_full_front_queue_is_503(front: LiveServer) -> None:
    body = {"model": MODEL, "messages": [LONG], "max_tokens": 1500, "temperature": 0, "stream": True}
    url = front.url + "/v1/chat/completions"
    with httpx.stream("POST", url, json=body) as running:
        lines = running.iter_lines()
        # The first words (not the role chunk, sent before the owner thread takes the request):
        # the generation runs on the front's owner thread and the queue slot is free again.
        next(line for line in lines if line.startswith("data: ") and '"content"' in line)
        with httpx.stream("POST", url, json=body) as waiting:  # takes the one queue slot
            refused = httpx.post(url, json={**body, "stream": False})
            assert waiting.status_code == 200
    assert refused.status_code == 503
    assert refused.headers["Retry-After"]
    assert refused.json()["error"]["code"] == "queue_full"
    deadline = time.monotonic() + 10
    while httpx.get(front.url + "/health").json()["queue_depth"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(front.url + "/health").json()["queue_depth"] == 0


def test_serve_builds_a_remote_engine_without_a_local_model(backend: LiveServer, capsys) -> None:
    from server.cli.main import EXIT_USAGE, load_engine, main

    assert main(["serve", "--engine", "openai"]) == EXIT_USAGE
    assert "--engine-url" in capsys.readouterr().err
    engine = load_engine(Settings(engine="openai", engine_url=backend.url, engine_grammar="none"))
    try:
        assert engine.info.backend == f"remote:{backend.url}"
        assert engine.info.model_id == MODEL and "default" in engine.info.aliases
        assert engine.info.grammar_support == "none"
    finally:
        engine.close()


TOKEN_TEXT = "héllo <|im_end|> wörld 🌊"


def test_tokenizer_routes_forward_to_the_backend(front: LiveServer, backend: LiveServer) -> None:
    """The front's /tokenize and /detokenize answer what the backend's own answer (ids,
    pieces, BOS/EOS, special tokens, bytes of a split character), not a 501."""
    for body in (
        {"content": TOKEN_TEXT},
        {"content": TOKEN_TEXT, "with_pieces": True},
        {"content": TOKEN_TEXT, "add_special": True},
        {"content": ""},
    ):
        mine = httpx.post(front.url + "/tokenize", json=body, timeout=GEN_S)
        assert mine.status_code == 200, mine.text
        assert mine.json() == httpx.post(backend.url + "/tokenize", json=body, timeout=GEN_S).json(), body
    tokens = httpx.post(backend.url + "/tokenize", json={"content": TOKEN_TEXT}).json()["tokens"]
    assert len(tokens) > 5
    back = httpx.post(front.url + "/detokenize", json={"tokens": tokens}, timeout=GEN_S)
    assert back.status_code == 200 and back.json() == {"content": TOKEN_TEXT}
    refused = httpx.post(front.url + "/detokenize", json={"tokens": [10**9]}, timeout=GEN_S)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "tokens"
    assert "10000" in refused.json()["error"]["message"]  # the backend's reason travels


def test_token_pieces_not_seen_in_tokenize_come_from_detokenize(backend: LiveServer) -> None:
    engine = RemoteEngine(backend.url, max_queue=1)
    try:
        ids = engine.tokenize("sea")
        assert engine.token_pieces(ids) == [engine.detokenize([t]).encode() for t in ids]
        engine._pieces.clear()  # as for ids no tokenize answer listed
        assert b"".join(engine.token_pieces(ids)) == b"sea"
    finally:
        engine.close()


def test_a_backend_without_a_tokenizer_still_gives_501() -> None:
    """A codeact-server on the scripted engine answers 501 itself: the front says the same."""
    scripted = create_app(Settings(sandbox_pool_size=0), ScriptedEngine(), close_engine=True)
    with LiveServer(scripted) as bare:
        engine = RemoteEngine(bare.url, max_queue=1)
        with LiveServer(create_app(Settings(sandbox_pool_size=0), engine)) as front:
            for path, body in (("/tokenize", {"content": "a"}), ("/detokenize", {"tokens": [1]})):
                answer = httpx.post(front.url + path, json=body, timeout=GEN_S)
                assert answer.status_code == 501, answer.text
                assert "no usable /tokenize" in answer.json()["error"]["message"]
