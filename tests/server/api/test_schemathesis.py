"""schemathesis with ``--checks all`` against every route of a live server on the scripted
engine: every status code, error body, content type and header the server answers is the
one its OpenAPI document promises, and a request the document calls valid is not refused.

Why the CLI in a subprocess: it is the command people run (``st run URL --checks all``),
with all four phases (examples, coverage, fuzzing, stateful); a failure prints the curl
line that reproduces it. One exception, scoped by a config file to two operations: the
scripted engine has no tokenizer, so ``/tokenize`` and ``/detokenize`` answer their
documented 501, which ``not_a_server_error`` flags as any 5xx; the config adds 501 (only)
to that check's expected statuses there, and every other check still runs on them
(``tests/server/openai/test_tokenize.py`` covers them on the real model). Not
``checks.not_a_server_error.enabled = false``: ``--checks all`` names every check on the
command line, which outranks a config file's ``enabled`` (schemathesis'
``ChecksConfig.from_hierarchy``), so that line had no effect; and it would have let a 500
through as well.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

CONFIG = """
[[operations]]
include-path = ["/tokenize", "/detokenize"]
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "501"]
"""


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    engine = ScriptedEngine(responder=lambda _prompt: "<solution>ok</solution>")
    with LiveServer(create_app(Settings(sandbox_pool_size=0), engine, close_engine=True)) as live:
        yield live


@pytest.mark.slow
def test_every_route_passes_all_checks(server: LiveServer, tmp_path: Path) -> None:
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    assert httpx.post(server.url + "/tokenize", json={"content": "a"}).status_code == 501  # why the exception
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(tmp_path / "schemathesis.toml"),
        "run",
        server.url + "/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "10",
        "--seed",
        "1",
        "--no-color",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=tmp_path)
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert "Tested: " in run.stdout and "failures" not in run.stdout.split("SUMMARY")[-1].lower(), report
