"""SIGTERM on a real ``codeact-server serve``: drain, then stop every sandbox worker.

Two agent requests are in flight when the signal arrives, each in its own session and each
running code in its sandbox: a tool definition that sleeps (deterministic, whatever the
model would write, and no model time, which a busy CI machine makes unpredictable). The
short one's tool then fails, so it is answered (400) inside the grace period; the long one
is still running when the grace period ends and is cut off with a 503. Afterwards the server has exited and
no process it started (sandbox workers, bubblewrap, their children) is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from benchmarks.servers import free_port
from sandbox.confine.isolation import WORKER_PATH
from tests.conftest import embedded_model_path
from tests.live_server import wait_until_healthy

ROOT = Path(__file__).resolve().parents[3]
GRACE_S = 6


def sleeping_tool(seconds: float) -> dict[str, str]:
    return {
        "name": "ready",
        "signature": "ready() -> bool",
        "description": "Says the tools are ready.",
        "source": f"import time\ntime.sleep({seconds})\nraise RuntimeError('tool broke after {seconds} s')\n",
    }


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def workers_of(server_pid: int, tmp: Path) -> list[psutil.Process]:
    """Live sandbox-worker processes of this server: by parent pid or by its temp dir."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if (
            (str(WORKER_PATH) in cmdline or "bwrap" in cmdline)
            and (f'"parent_pid": {server_pid}' in cmdline or str(tmp) in cmdline)
            and alive(proc)
        ):
            found.append(proc)
    return found


@pytest.mark.slow
def test_sigterm_drains_then_leaves_no_sandbox_process(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEACT_")}
    env["TMPDIR"] = str(tmp_path)  # sandbox workspaces live here, so their processes are findable
    env["PYTHONFAULTHANDLER"] = "1"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server.cli.main",
            "serve",
            "--model",
            str(embedded_model_path()),
            "--port",
            str(port),
            "--ctx-size",
            "2048",
            "--sandbox-pool-size",
            "1",
            "--shutdown-grace",
            str(GRACE_S),
            "--execution-timeout",
            "120",
            "--store",  # its own: the machine's default store is the user's
            str(tmp_path / "store.db"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(server, url, tmp_path / "server.log", timeout_s=60)

        results: dict[str, tuple[int | None, str]] = {}
        answered: dict[str, float] = {}

        def agent(name: str, sleep_s: float) -> None:
            body = {
                "model": "default",
                "messages": [{"role": "user", "content": "Say hi."}],
                "tools": [sleeping_tool(sleep_s)],
                "max_turns": 1,
                "max_tokens": 8,
                "temperature": 0,
            }
            try:
                response = httpx.post(url + "/v1/agent", json=body, timeout=60)
                results[name] = (response.status_code, response.text)
            except httpx.HTTPError as exc:
                results[name] = (None, repr(exc))
            answered[name] = time.monotonic()

        threads = [
            threading.Thread(target=agent, args=("short", 4)),
            threading.Thread(target=agent, args=("long", 300)),
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while httpx.get(url + "/health").json()["sessions"] < 2:
            assert time.monotonic() < deadline, "the sessions did not start"
            time.sleep(0.1)
        time.sleep(0.3)  # both tool definitions are now sleeping in their sandboxes
        started = psutil.Process(server.pid).children(recursive=True)
        assert any(str(WORKER_PATH) in " ".join(p.cmdline()) for p in started if alive(p))

        server.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = server.wait(timeout=GRACE_S + 30)
        took = time.monotonic() - signalled
        for thread in threads:
            thread.join(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    output = (tmp_path / "server.log").read_text()
    assert code in (0, -signal.SIGTERM), output
    # The short request was answered after the signal: the server drained it.
    assert results["short"][0] == 400 and "tool broke after 4 s" in results["short"][1], (results, output)
    assert signalled < answered["short"] < signalled + GRACE_S
    assert results["long"][0] == 503 and "shutting_down" in results["long"][1]  # cut off at the end of grace
    assert "Traceback" not in output
    assert GRACE_S - 1 < took < GRACE_S + 25, output
    deadline = time.monotonic() + 5
    while (left := [p for p in started if alive(p)] + workers_of(server.pid, tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], [p.cmdline() for p in left]
