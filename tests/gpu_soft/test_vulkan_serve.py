"""``serve`` on a GPU, on any machine: every layer of the embedded model on lavapipe (Vulkan).

What a GPU user depends on and the CPU suite cannot show: the build's GPU backend is found
and named, every layer is offloaded by default, ``--parallel`` defaults to the GPU's 4,
libllama is the first library to need the C++ runtime (a CUDA build crashed otherwise,
issue 25), tokens stream from the offloaded model, the agent loop runs code between turns,
and SIGTERM ends the server cleanly. The tests run in file order; the last one stops it.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import openai
import pytest

from sandbox import Sandbox
from tests.gpu_soft.soft_gpu import SoftGpuServer
from tests.models.engine.test_load_order import CXX_RUNTIME, first_to_load, is_llama_library

pytestmark = [pytest.mark.model, pytest.mark.slow]

# A task under which SmolLM2, offloaded to lavapipe, writes an <execute> block in its first turn
# (greedy; on this build it wrote print("7 * 6 = 42")). One turn of 48 tokens: lavapipe on 2 busy
# cores decoded about 1 token/s, and its first long prompt compiles the matmul pipelines (129 s).
CODE_TASK = "Calculate 7 * 6 by executing Python code."


def health(server: SoftGpuServer) -> dict:
    response = httpx.get(server.url + "/health", timeout=10)
    assert response.status_code == 200
    return response.json()


def test_health_names_lavapipe_and_every_layer_offloaded(soft_gpu: SoftGpuServer) -> None:
    body = health(soft_gpu)
    assert body["backend"] == "vulkan"
    assert body["total_layers"] == 30  # SmolLM2-135M
    assert body["offloaded_layers"] == body["total_layers"]
    assert len(body["devices"]) == 1 and body["devices"][0].startswith("Vulkan0: llvmpipe"), body["devices"]
    # The serving process really opened Mesa's lavapipe driver, not only a library that names it.
    maps = Path(f"/proc/{soft_gpu.process.pid}/maps").read_text()
    assert "libvulkan_lvp.so" in maps
    assert str(soft_gpu.llama_lib / "libggml-vulkan.so") in maps


def test_parallel_defaults_to_four_sequences_on_a_gpu(soft_gpu: SoftGpuServer) -> None:
    assert health(soft_gpu)["parallel_sequences"] == 4


def test_libllama_is_the_first_to_load_the_cxx_runtime(soft_gpu: SoftGpuServer) -> None:
    log = (soft_gpu.loader_log_dir / f"ld.{soft_gpu.process.pid}").read_text()
    assert re.search(rf"file={re.escape(str(soft_gpu.llama_lib))}/libllama\.so", log), "not the Vulkan libllama"
    first = first_to_load(log, CXX_RUNTIME)
    assert first is not None and is_llama_library(first), f"{first} loaded the C++ runtime before libllama did"
    assert "libstdc++ was loaded before libllama" not in soft_gpu.log.read_text()


def test_a_streamed_chat_answer_comes_from_the_offloaded_model(soft_gpu: SoftGpuServer) -> None:
    with openai.OpenAI(base_url=soft_gpu.url + "/v1", api_key="x", max_retries=0, timeout=120) as client:
        stream = client.chat.completions.create(
            model=health(soft_gpu)["model"],
            messages=[{"role": "user", "content": "Say hello in five words."}],
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = chunks[-1].usage
    assert text.strip(), "no text streamed"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2, "the answer came in one piece"
    assert finish == [finish[-1]] and finish[-1] in {"stop", "length"}
    assert usage is not None and 0 < usage.completion_tokens <= 24


@pytest.mark.timeout(600)
def test_an_agent_run_executes_the_models_code(soft_gpu: SoftGpuServer) -> None:
    body = {
        "model": health(soft_gpu)["model"],
        "messages": [{"role": "user", "content": CODE_TASK}],
        "temperature": 0,
        "seed": 0,
        "max_tokens": 48,
        "max_turns": 1,
    }
    response = httpx.post(soft_gpu.url + "/v1/agent", json=body, timeout=540)
    assert response.status_code == 200, response.text
    agent = response.json()["agent"]
    assert agent["error"] is None
    executed = [s for s in agent["steps"] if s["action"]["type"] == "execute"]
    assert executed, f"the offloaded model wrote no <execute> block: {agent['steps']}"
    with Sandbox() as fresh:  # the code really ran: the same code in a fresh sandbox prints the same
        for step in executed:
            assert step["observation"]["message"].startswith("Observation:\n")
            again = fresh.run(step["action"]["code"])
            assert again.stdout == step["observation"]["stdout"]
            assert (again.error is None) == (step["observation"]["error"] is None)


def test_sigterm_stops_the_server_cleanly(soft_gpu: SoftGpuServer) -> None:
    started = time.monotonic()
    soft_gpu.process.send_signal(signal.SIGTERM)
    code = soft_gpu.process.wait(timeout=60)
    log = soft_gpu.log.read_text()
    assert code == 0, log[-3000:]
    assert time.monotonic() - started < 30
    assert "Traceback" not in log and "Segmentation fault" not in log, log[-3000:]
