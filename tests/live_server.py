"""The tests' live server is the package's own: real uvicorn on a free loopback port, in a
thread (``server.api.loopback``), under the name the test modules use. ``wait_until_healthy``
is for the tests that start ``codeact-server serve`` as a process of its own."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from server.api.loopback import LoopbackServer as LiveServer

__all__ = ["LiveServer", "wait_until_healthy"]


def wait_until_healthy(server: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 90) -> None:
    """Until ``url``'s ``/health`` answers 200; fails with the server's log if it exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert server.poll() is None, log.read_text()
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)
