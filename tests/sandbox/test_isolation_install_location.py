"""An interpreter installed under /tmp sandboxes at full strength (issue 14: a clone in /tmp).

The private /tmp inside bubblewrap used to be mounted over a venv living under /tmp, so the
probe failed (`execvp /tmp/x/.venv/bin/python: No such file or directory`) and the server
quietly fell back to rlimits-only. Here a real venv is made under /tmp and the real worker
runs in it, at the strongest level this machine is expected to give.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import EXPECTED, WORKER_LIMITS, need_level

from models.engine.scripted import ScriptedEngine
from sandbox import workspace
from sandbox.confine import isolation
from sandbox.process import WorkerProcess
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def tmp_venv_python() -> Iterator[str]:
    """A fresh venv under /tmp (stdlib only: the worker needs nothing else)."""
    root = Path(tempfile.mkdtemp(prefix="codeact-venv-", dir="/tmp"))
    base = getattr(sys, "_base_executable", sys.executable)
    try:
        subprocess.run(
            [base, "-m", "venv", "--without-pip", "--system-site-packages", str(root / "venv")], check=True, timeout=120
        )
        python = root / "venv" / "bin" / "python"
        root.chmod(0o755)  # a uid-dropped worker must be able to reach it
        yield str(python)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_in_worker(level: isolation.Level, python: str, code: str) -> dict[str, object]:
    uid = isolation.UIDS.acquire() if isolation.wants_uid(level, python) else None
    dirs = workspace.SessionDirs.create(None, uid)
    proc = WorkerProcess(isolation.plan(level, dirs.workspace, dirs.tmp, False, uid, python=python))
    try:
        assert proc.request({"op": "configure", "limits": WORKER_LIMITS.to_json()})["op"] == "configured"
        proc.send({"op": "run", "id": 1, "code": code, "hard_cap": 100_000})
        reply = proc.receive(time.monotonic() + 20)
        assert reply is not None
        return reply
    finally:
        proc.close()
        dirs.remove()
        isolation.UIDS.release(uid)


def test_interpreter_dirs_come_from_that_interpreter(tmp_venv_python: str) -> None:
    dirs = isolation.interpreter_dirs(tmp_venv_python)
    assert str(Path(tmp_venv_python).parent.parent) in dirs
    assert str(isolation.PACKAGE_DIR) in dirs


def test_venv_under_tmp_gets_the_expected_level(tmp_venv_python: str) -> None:
    level = isolation.detect("auto", tmp_venv_python)
    problems = {lv: isolation.problem(lv, tmp_venv_python) for lv in isolation.LEVELS}
    assert isolation.LEVELS.index(level) <= isolation.LEVELS.index(EXPECTED), problems
    if EXPECTED == "namespaces":
        assert level == "namespaces", problems["namespaces"]


@pytest.mark.parametrize("level", ["namespaces", "landlock"])
def test_real_worker_runs_in_the_tmp_venv(tmp_venv_python: str, level: isolation.Level) -> None:
    need_level(level, tmp_venv_python)
    venv = str(Path(tmp_venv_python).parent.parent)
    reply = run_in_worker(
        level,
        tmp_venv_python,
        "import sys, os\nprint(sys.prefix)\nopen('made-here', 'w').write('ok')\nprint(os.listdir('.'))",
    )
    assert reply["error"] is None, reply
    assert reply["stdout"] == f"{venv}\n['made-here']\n"


def test_health_reports_the_level_for_a_venv_under_tmp(tmp_venv_python: str) -> None:
    """What a user of a /tmp clone sees: `/health` names the level agent code really gets."""
    engine = ScriptedEngine()
    settings = Settings(sandbox_pool_size=1, sandbox_python=Path(tmp_venv_python))
    with LiveServer(create_app(settings, engine)) as live:
        health = httpx.get(live.url + "/health").json()
        rank = isolation.LEVELS.index
        assert rank(health["sandbox_isolation"]) <= rank(EXPECTED), health["sandbox_isolation"]
        engine.enqueue("<execute>import sys\nprint(sys.prefix)</execute>", "<solution>done</solution>")
        body = {"model": "scripted", "messages": [{"role": "user", "content": "where am I?"}]}
        reply = httpx.post(live.url + "/v1/agent", json=body, timeout=60).json()["agent"]
        observation = reply["steps"][0]["observation"]
        assert observation["stdout"] == str(Path(tmp_venv_python).parent.parent) + "\n", observation
