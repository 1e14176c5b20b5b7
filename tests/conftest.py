"""Shared fixtures: the embedded model loaded once, live servers around apps."""

from __future__ import annotations

# isort: off
import tests.llama_first  # noqa: F401 - libllama before numpy, in this process too

# isort: on
import os
from collections.abc import Iterator

import openai
import pytest

from models.store.local import embedded_model_path
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

__all__ = ["embedded_model_path"]  # the model tests import it from here

# Apps and servers in tests keep records in memory unless a test names a store file: the
# default store is one per machine and a server holds it alone (tests/server/store/ test it).
os.environ["CODEACT_STORE"] = "none"


@pytest.fixture(scope="session")
def real_engine() -> Iterator[object]:
    """The embedded SmolLM2-135M on real llama.cpp, shared by every model test."""
    from models.engine.llama.engine import LlamaEngine

    engine = LlamaEngine(embedded_model_path(), model_id="smollm2-135m", ctx_size=2048, max_queue=4)
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
