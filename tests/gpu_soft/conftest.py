"""The software-GPU tier: ``codeact-server serve`` offloading every layer to Mesa's lavapipe.

Why a tier of its own: it needs llama-cpp-python built with llama.cpp's Vulkan backend
(``benchmarks/vulkan_build.py``: about half an hour on 2 cores, cached once per machine) and
Debian's Vulkan packages, which the default suite does not. ``make test-gpu-soft`` builds (or
finds) that build, then runs this folder with ``CODEACT_TEST_GPU_SOFT=1``; there a missing
build fails the run. In any other run (plain ``pytest``, ``make test``) the tier is skipped,
saying how to run it.

One server serves the whole module (its start is what costs): started as a user starts it,
from this clone's console script, with ``--llama-lib`` pointing at the Vulkan build's
``llama_cpp/lib`` (the same llama-cpp-python version, so the same bindings) and
``GGML_VK_VISIBLE_DEVICES=0``: ggml-vulkan skips CPU-type Vulkan devices unless named, and
lavapipe is one. ``LD_DEBUG=files`` records the loader's order for the load-order test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gpu_soft.soft_gpu import ENABLE, SoftGpuServer, started_serve


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(ENABLE) == "1":
        return
    skip = pytest.mark.skip(reason=f"software-GPU tier: run `make test-gpu-soft` (sets {ENABLE}=1)")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def soft_gpu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftGpuServer]:
    """One ``serve`` on lavapipe for the module. No ``--n-gpu-layers`` and no ``--parallel``:
    the GPU defaults (every layer, 4 sequences) are under test."""
    args = ("--sandbox-pool-size", "1", "--execution-timeout", "30")
    with started_serve(tmp_path_factory.mktemp("gpu-soft"), lavapipe=True, args=args) as server:
        yield server
