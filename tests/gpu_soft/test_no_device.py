"""A GPU build whose device is not there serves on the CPU and says so once (issue 37).

The case users meet: a CUDA wheel in a container started without ``--gpus``, or on a machine
whose driver is not loaded. The Vulkan build with lavapipe hidden (ggml-vulkan skips CPU-type
devices unless ``GGML_VK_VISIBLE_DEVICES`` names them) is the same situation on any machine:
the backend's library is loaded, and it finds no device.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.gpu_soft.soft_gpu import started_serve

pytestmark = [pytest.mark.model, pytest.mark.slow]

WARNING = "this llama.cpp build has the vulkan backend but no VULKAN device answered"


def test_a_gpu_build_without_its_device_serves_on_the_cpu_with_one_warning(tmp_path: Path) -> None:
    with started_serve(tmp_path, lavapipe=False, args=("--sandbox-pool-size", "0")) as server:
        body = httpx.get(server.url + "/health", timeout=10).json()
        reply = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": body["model"], "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
            timeout=120,
        )
    assert body["backend"] == "cpu"
    assert body["offloaded_layers"] == 0 and body["devices"] == []
    assert body["parallel_sequences"] == 1  # the CPU default, not the GPU's 4
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] > 0
    log = server.log.read_text()
    assert log.count(WARNING) == 1, log[-3000:]
    assert "Traceback" not in log
