"""``codeact-server run TASK`` without ``--server``: the app served in-process on a private
loopback port (``server.api.loopback``), the task streamed over real HTTP, the server
stopped at the end. A real subprocess, the embedded model, the real sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.store.local import embedded_model_path

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.model
@pytest.mark.slow
def test_run_in_process_streams_the_task_and_exits() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli.main",
            "run",
            "--model",
            str(embedded_model_path()),
            "--max-turns",
            "1",
            "--json",
            "Print 2 + 2.",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env={**os.environ, "CODEACT_SANDBOX_POOL_SIZE": "1", "NO_COLOR": "1"},
    )
    assert "Traceback" not in result.stderr, result.stderr
    # The terminal view's last note, then the done event as JSON (--json).
    note, _, done_json = result.stdout.rpartition("\n{\n")
    done = json.loads("{\n" + done_json)
    assert done["type"] == "done" and done["turns"] == 1 and done["session_id"].startswith("sess_")
    assert f"after 1 turn(s); session {done['session_id']}]" in note
    # 0 when the model answered, 1 when it ran out of turns: either way the run finished cleanly.
    assert result.returncode == (0 if done["finish_reason"] in ("solution", "no_action") else 1)
