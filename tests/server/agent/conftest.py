"""The scripted agent tests' fixtures: a fresh scripted model and a live server around it.

Function-scoped on purpose: each test enqueues its own turns and reads its own requests.
Modules that need other settings (test_agent_real.py, test_loop.py) define their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models.engine.scripted import ScriptedEngine
from tests.live_server import LiveServer
from tests.scripted_agent import scripted_server


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def server(engine: ScriptedEngine) -> Iterator[LiveServer]:
    with scripted_server(engine) as live:
        yield live
