"""The ``landlock`` level's two parts, each checked alone in a real throw-away process.

The attack suite runs agent code through the whole level (Landlock and seccomp together),
where seccomp refuses an AF_INET socket before Landlock's TCP rule is ever consulted; here
each layer must hold by itself, so losing one cannot hide behind the other.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, WORKER_LIMITS, need_level

from sandbox import Sandbox, workspace
from sandbox.confine import isolation, seccomp
from sandbox.process import WorkerProcess

REPO = str(isolation.PACKAGE_DIR.parent)


@pytest.fixture(autouse=True)
def _landlock_here() -> None:
    need_level("landlock")


def confined(code: str, tmp_path: Path, *, landlock: bool, seccomp_filter: bool) -> str:
    """Run `code` in a fresh interpreter after applying the chosen layer(s); its stdout."""
    rules = isolation.landlock_rules(str(tmp_path), str(tmp_path), False, isolation.interpreter_dirs())
    prelude = (
        f"import json, sys\nsys.path.insert(0, {REPO!r})\n"
        "from sandbox.confine import landlock, seccomp\n"
        f"rules = json.loads({json.dumps(rules)!r})\n"
    )
    if landlock:
        prelude += "landlock.restrict(rules['read'], rules['write'], False)\n"
    if seccomp_filter:
        prelude += "import ctypes\nctypes.CDLL(None).prctl(38, 1, 0, 0, 0)\nassert seccomp.install(False)\n"
    done = subprocess.run(
        [sys.executable, "-I", "-c", prelude + code], capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_landlock_alone_refuses_tcp_connect_and_bind(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.5)
        port = server.getsockname()[1]
        out = confined(
            "import socket\n"
            f"for action in ('connect', 'bind'):\n"
            "    s = socket.socket()\n"
            "    try:\n"
            f"        s.connect(('127.0.0.1', {port})) if action == 'connect' else s.bind(('127.0.0.1', 0))\n"
            "        print(action, 'allowed')\n"
            "    except OSError as e:\n"
            "        print(action, type(e).__name__)\n",
            tmp_path,
            landlock=True,
            seccomp_filter=False,
        )
        with pytest.raises(TimeoutError):
            server.accept()
    assert out == "connect PermissionError\nbind PermissionError\n"


def test_landlock_alone_confines_files(tmp_path: Path) -> None:
    inside, outside = tmp_path / "in", tmp_path.parent / f"{tmp_path.name}-outside"
    inside.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("s3cret")
    secret, new = str(outside / "secret"), str(outside / "new")
    out = confined(
        "import os\nopen('mine', 'w').write('ok')\nprint(open('mine').read())\n"
        f"for op in (lambda: open({secret!r}).read(), lambda: open({new!r}, 'w'),"
        " lambda: os.listdir('/root'), lambda: open('/etc/shadow')):\n"
        "    try:\n        op()\n        print('allowed')\n"
        "    except OSError as e:\n        print(type(e).__name__)\n",
        inside,
        landlock=True,
        seccomp_filter=False,
    )
    assert out == "ok\n" + "PermissionError\n" * 4
    assert not (outside / "new").exists()


def test_seccomp_alone_refuses_inet_sockets_and_ptrace(tmp_path: Path) -> None:
    out = confined(
        "import ctypes, socket\n"
        "for family in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK):\n"
        "    try:\n        socket.socket(family, socket.SOCK_DGRAM)\n        print('allowed')\n"
        "    except OSError as e:\n        print(type(e).__name__)\n"
        "socket.socket(socket.AF_UNIX).close()\n"
        "a, b = socket.socketpair()\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.ptrace(0, 0, 0, 0), ctypes.get_errno())\n",
        tmp_path,
        landlock=False,
        seccomp_filter=True,
    )
    assert out == "PermissionError\n" * 3 + "-1 1\n"


def test_seccomp_program_is_well_formed() -> None:
    for machine in ("x86_64", "aarch64"):
        for network in (False, True):
            program = seccomp.program(machine, network)
            assert program[-1] == (0x06, 0, 0, 0x80000000)  # last: kill (foreign ABI)
            for index, (code, jt, jf, _k) in enumerate(program):
                if code in (0x15, 0x35):
                    assert index + 1 + max(jt, jf) < len(program)


def test_network_setting_lifts_both_layers(tmp_path: Path) -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        Sandbox(limits=FAST, network=True, isolation_level="landlock") as sb,
    ):
        port = server.getsockname()[1]
        result = sb.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('ok')")
        assert result.stdout == "ok\n", result
        assert sb.run("open('/etc/passwd', 'a')").error is not None  # files still confined


def test_explicit_request_fails_loudly_when_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    isolation.detect.cache_clear()
    isolation._bwrap_problem.cache_clear()
    try:
        with pytest.raises(isolation.IsolationUnavailable, match="bubblewrap is not installed"):
            isolation.detect("namespaces")
        assert isolation.detect("auto") == "landlock"
    finally:
        isolation.detect.cache_clear()
        isolation._bwrap_problem.cache_clear()


@pytest.mark.skipif(os.getuid() != 0, reason="the fallback is for a root server's worker left at uid 0")
def test_a_worker_left_at_uid_0_holds_no_capability() -> None:
    """plan() with uid=None under a root server: Landlock, seccomp, and no capabilities."""
    dirs = workspace.SessionDirs.create(None, None)
    proc = WorkerProcess(isolation.plan("landlock", dirs.workspace, dirs.tmp, False, None))
    try:
        proc.request({"op": "configure", "limits": WORKER_LIMITS.to_json()})
        code = (
            "import os\nopen('f', 'w').close()\nprint(os.getuid())\n"
            "for op in (lambda: os.chown('f', 4321, 4321), lambda: os.nice(-5)):\n"
            "    try:\n        op()\n        print('allowed')\n"
            "    except OSError as e:\n        print(type(e).__name__)"
        )
        reply = proc.request({"op": "run", "id": 1, "code": code, "hard_cap": 100_000}, timeout=20)
        assert reply["stdout"] == "0\nPermissionError\nPermissionError\n", reply
    finally:
        proc.close()
        dirs.remove()
