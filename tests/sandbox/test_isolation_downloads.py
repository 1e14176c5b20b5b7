"""Workspace downloads never follow a link the agent's code planted, even while it runs.

Real sandboxes make the links (at every level this machine offers); the server side opens
them with `workspace.open_file`, and the HTTP route is asked for them through a real server.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from models.engine.scripted import ScriptedEngine
from sandbox import Sandbox, workspace
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

PLANT = """
import os
import sys
os.makedirs('sub', exist_ok=True)
open('sub/ok.txt', 'w').write('fine')
os.symlink('/etc/passwd', 'passwd')
os.symlink('/etc', 'etc')
os.symlink('sub', 'alias')
os.mkfifo('pipe')
print('planted')
"""


def read(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as f:
        return f.read()


def test_links_planted_by_the_code_are_refused(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox()
    assert sb.run(PLANT).stdout == "planted\n"
    fd, info = workspace.open_file(sb.workspace, "sub/ok.txt")
    assert read(fd) == b"fine" and info.st_size == 4
    for link in ("passwd", "etc/passwd", "alias/ok.txt"):
        with pytest.raises(workspace.UnsafePath):
            workspace.open_file(sb.workspace, link)
    for escape in ("../workspace/sub/ok.txt", "/etc/passwd", "sub/../sub/ok.txt", "sub//ok.txt"):
        with pytest.raises(workspace.UnsafePath):
            workspace.open_file(sb.workspace, escape)
    started = time.monotonic()
    for not_a_file in ("pipe", "sub", "missing.txt"):
        with pytest.raises(FileNotFoundError):
            workspace.open_file(sb.workspace, not_a_file)
    assert time.monotonic() - started < 1  # the FIFO did not block the server


def test_no_race_with_code_swapping_a_file_for_a_link(make_sandbox: Callable[..., Sandbox]) -> None:
    """The code flips `race.txt` between a file and a link to /etc/passwd as fast as it can."""
    sb = make_sandbox()
    # Each state is held for a moment (else, on a busy machine, one may never be caught),
    # and the swaps are atomic renames: the opener can meet either at any instant.
    swap = (
        "import os, time\nend = time.monotonic() + 1.5\n"
        "while time.monotonic() < end:\n"
        "    open('tmp.txt', 'w').write('mine')\n    os.replace('tmp.txt', 'race.txt')\n"
        "    time.sleep(0.0005)\n"
        "    os.symlink('/etc/passwd', 'link.tmp')\n    os.replace('link.tmp', 'race.txt')\n"
        "    time.sleep(0.0005)\n"
    )
    runner = threading.Thread(target=sb.run, args=(swap,))
    runner.start()
    served, refused = [], 0
    while runner.is_alive():
        try:
            fd, _ = workspace.open_file(sb.workspace, "race.txt")
        except (workspace.UnsafePath, FileNotFoundError):
            refused += 1
            continue
        served.append(read(fd))
    runner.join()
    assert served and refused, (len(served), refused)
    assert set(served) <= {b"mine", b""}  # b"": opened just after the code truncated it


def test_download_route_refuses_a_link_to_etc_passwd() -> None:
    engine = ScriptedEngine()
    settings = Settings(sandbox_pool_size=0, sandbox_python=Path(sys.executable))
    with LiveServer(create_app(settings, engine)) as live:
        engine.enqueue(
            "<execute>import os\nos.symlink('/etc/passwd', 'passwd.txt')\n"
            "open('real.txt', 'w').write('real')</execute>",
            "<solution>done</solution>",
        )
        body = {"model": "scripted", "messages": [{"role": "user", "content": "make files"}]}
        reply = httpx.post(live.url + "/v1/agent", json=body, timeout=60).json()["agent"]
        files = f"{live.url}/v1/agent/sessions/{reply['session_id']}/files"
        assert httpx.get(f"{files}/real.txt").content == b"real"
        refused = httpx.get(f"{files}/passwd.txt")
        assert refused.status_code in (400, 404) and b"root:" not in refused.content
