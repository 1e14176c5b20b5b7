"""The pool, and the promise that no worker outlives a SIGKILLed server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from sandbox import Limits, SandboxPool

ROOT = Path(__file__).resolve().parents[2]


def test_pool_hands_out_fresh_private_workspaces() -> None:
    with SandboxPool(size=2) as pool:
        deadline = time.monotonic() + 20
        while pool.idle < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pool.idle == 2
        first = pool.acquire(limits=Limits(wall_seconds=5))
        second = pool.acquire(policy="restricted")
        try:
            assert first.workspace != second.workspace
            assert first.isolation == pool.isolation
            assert first.run("open('mine.txt', 'w').write('1')\n6 * 7").stdout == "42\n"
            assert not (second.workspace / "mine.txt").exists()
            assert second.run("len([1, 2])").stdout == "2\n"
            assert "rejected" in (second.run("().__class__").error or "")
        finally:
            first.close()
            second.close()
        assert not first.workspace.exists()
        third = pool.acquire(network=True)  # not pre-started: started on the spot
        try:
            assert third.run("print('net')").stdout == "net\n"
        finally:
            third.close()
    with pytest.raises(Exception, match="closed"):
        pool.acquire()


@pytest.mark.slow
def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:
        return []


def test_worker_dies_when_server_is_sigkilled(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from sandbox import Sandbox
        sb = Sandbox(keep_processes=True)  # the cell's child outlives the cell, as a daemon would
        sb.run("import subprocess; subprocess.Popen(['sleep', '300'])")
        print(sb.pid, flush=True)
        time.sleep(300)
    """)
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    worker_pid = int(server.stdout.readline())
    worker = psutil.Process(worker_pid)
    deadline = time.monotonic() + 10  # the child may not have exec'd `sleep` yet on a busy machine
    while True:
        descendants = [worker, *worker.children(recursive=True)]
        if any("sleep" in " ".join(_cmdline(p)) for p in descendants) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert any("sleep" in " ".join(_cmdline(p)) for p in descendants)
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    server.stdout.close()
    gone, alive = psutil.wait_procs(descendants, timeout=10)
    assert alive == [], f"orphans left behind: {alive}"
