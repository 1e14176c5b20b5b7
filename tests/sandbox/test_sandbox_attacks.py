"""Real attacks from inside the sandbox; each is reported and the next run works.

Every test runs at every isolation level this machine offers (the `level` fixture in
conftest: namespaces, landlock, rlimits), and asserts what that level promises
(`isolation.guarantees`); a level the machine is expected to offer but cannot start fails.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from conftest import assert_fresh_run_works, require

from sandbox import Limits, Sandbox

QUICK = Limits(
    wall_seconds=2,
    cpu_seconds=1,
    memory_mb=512,
    max_output_bytes=4000,
    max_processes=32,
    max_file_mb=5,
    max_workspace_mb=20,
)


def test_fork_bomb_is_contained(sb: Sandbox) -> None:
    require(sb, "nproc")
    result = sb.run("import os\nwhile True:\n    os.fork()")
    assert "BlockingIOError" in (result.error or "") or result.killed_reason in {"processes", "timeout"}
    assert_fresh_run_works(sb)


@pytest.mark.slow
def test_fork_bomb_that_ignores_errors_is_killed(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(QUICK)
    require(sb, "nproc")
    result = sb.run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert result.killed_reason in {"timeout", "processes"} and result.state_lost
    assert_fresh_run_works(sb)


def test_memory_bomb(sb: Sandbox) -> None:
    result = sb.run("x = bytearray(4 * 1024**3)")
    assert "MemoryError" in (result.error or "")
    grow = sb.run("x = []\nwhile True:\n    x.append(b'a' * 10**8)")  # 100 MB a step: the limit, not the clock, ends it
    assert "MemoryError" in (grow.error or "") or grow.killed_reason == "memory"
    assert_fresh_run_works(sb)


@pytest.mark.slow
def test_memory_bomb_across_child_processes_is_killed(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(Limits(wall_seconds=8, memory_mb=300, max_processes=32))
    code = (
        "import subprocess, sys\n"
        "hog = 'x = bytearray(200 * 1024**2); x[::4096] = b\"1\" * len(x[::4096]); import time; time.sleep(60)'\n"
        "ps = [subprocess.Popen([sys.executable, '-c', hog]) for _ in range(3)]\n"
        "[p.wait() for p in ps]"
    )
    result = sb.run(code)
    assert result.killed_reason == "memory" and result.state_lost
    assert "Memory limit" in (result.notice or "")
    assert_fresh_run_works(sb)


def test_infinite_loop_times_out(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(QUICK)
    result = sb.run("while True: pass")
    assert result.timed_out and result.killed_reason == "timeout"
    assert result.notice and "time limit" in result.notice
    assert_fresh_run_works(sb)
    sleeping = sb.run("import time\ntime.sleep(60)", timeout=0.5)
    assert sleeping.timed_out and sleeping.state_lost and sleeping.duration_s < 2
    assert_fresh_run_works(sb)


def test_busy_child_process_is_killed_with_the_tree(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(QUICK)
    code = "import subprocess, sys\np = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\np.wait()"
    before = {p.pid for p in psutil.process_iter()}
    result = sb.run(code)
    assert result.timed_out and result.state_lost
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.pid not in before and p.info["cmdline"] and "while True: pass" in " ".join(p.info["cmdline"])
    ]
    assert leftovers == []
    assert_fresh_run_works(sb)


def test_output_flood_is_stopped_and_truncated(sb: Sandbox) -> None:
    result = sb.run("while True:\n    print('spam' * 250)")
    assert result.killed_reason == "output" and result.truncated
    assert not result.state_lost
    assert "output truncated" in result.stdout and len(result.stdout) < 10_000
    assert_fresh_run_works(sb)


def test_disk_fill_one_file_hits_file_size_limit(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(QUICK)
    result = sb.run("f = open('big', 'wb')\nwhile True:\n    f.write(b'0' * 2**20)")
    assert "File too large" in (result.error or "")
    assert (sb.workspace / "big").stat().st_size <= 5 * 2**20
    assert_fresh_run_works(sb)


def test_disk_fill_many_files_hits_workspace_quota(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(QUICK)
    result = sb.run("import os\nfor i in range(8):\n    open(f'f{i}', 'wb').write(os.urandom(4 * 2**20))")
    assert result.killed_reason == "disk"
    assert "Workspace limit" in (result.notice or "") or "workspace went over" in (result.notice or "")
    assert sum(f.stat().st_size for f in sb.workspace.iterdir()) <= 20 * 2**20
    assert_fresh_run_works(sb)


def test_no_network_to_a_loopback_server(sb: Sandbox) -> None:
    require(sb, "network")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted: list[object] = []
    threading.Thread(target=lambda: _accept(server, accepted), daemon=True).start()
    result = sb.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)")
    assert result.error is not None
    assert any(name in result.error for name in ("ConnectionRefused", "PermissionError", "OSError"))
    server.close()
    assert accepted == []
    assert_fresh_run_works(sb)


def test_no_udp_to_a_loopback_listener(sb: Sandbox) -> None:
    require(sb, "network")
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    result = sb.run(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"print(s.sendto(b'leak', ('127.0.0.1', {port})))"
    )
    with pytest.raises(TimeoutError):
        listener.recvfrom(16)
    listener.close()
    assert result.error is not None or result.stdout == "4\n"  # sent into its own netns
    assert_fresh_run_works(sb)


def _accept(server: socket.socket, accepted: list[object]) -> None:
    with contextlib.suppress(OSError):
        accepted.append(server.accept())


def test_server_environment_is_invisible(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEACT_TEST_SECRET", "hunter2-api-key")
    # The sandbox was created before the variable was set, so also check a fresh worker.
    sb.kill()
    result = sb.run("import os\nprint(os.environ.get('CODEACT_TEST_SECRET'))\nprint(sorted(os.environ))")
    assert "hunter2" not in result.stdout and result.stdout.startswith("None")
    require(sb, "server-proc")
    proc = sb.run(f"print(open('/proc/{os.getpid()}/environ', 'rb').read())")
    assert "hunter2" not in proc.stdout
    assert proc.error is not None
    assert_fresh_run_works(sb)


def test_cannot_write_outside_workspace(sb: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    code = (
        "import os\nfails = []\n"
        f"for path in ['/etc/pwned', '/usr/pwned', {str(target)!r}, "
        f"{str(Path.cwd() / 'pwned')!r}]:\n"
        "    try:\n        open(path, 'w').write('x')\n"
        "    except OSError as e:\n        fails.append(type(e).__name__)\n"
        "print(len(fails))"
    )
    require(sb, "filesystem")
    result = sb.run(code)
    assert result.stdout == "4\n", result
    assert not target.exists() and not Path("/etc/pwned").exists()
    assert_fresh_run_works(sb)


def test_other_sessions_workspace_is_unreadable(make_sandbox: Callable[..., Sandbox]) -> None:
    alice, mallory = make_sandbox(), make_sandbox()
    alice.run("open('secret.txt', 'w').write('alice-only')")
    require(mallory, "other-sessions")
    result = mallory.run(f"print(open({str(alice.workspace / 'secret.txt')!r}).read())")
    assert "alice-only" not in result.stdout and result.error is not None
    listing = mallory.run(f"import os\nprint(os.listdir({str(alice.workspace.parent.parent)!r}))")
    assert alice.workspace.parent.name not in listing.stdout
    assert_fresh_run_works(mallory)


def test_cannot_kill_the_server(sb: Sandbox) -> None:
    require(sb, "server-signals")
    result = sb.run(
        f"import os, signal\nfor pid in (os.getppid(), {os.getpid()}):\n"
        "    try:\n        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError as e:\n        print(type(e).__name__)"
    )
    assert "PermissionError" in result.stdout or "ProcessLookupError" in result.stdout
    assert_fresh_run_works(sb)


def test_ctypes_tricks(sb: Sandbox) -> None:
    crash = sb.run("import ctypes\nctypes.string_at(0)")
    assert crash.killed_reason == "crashed" and crash.state_lost
    assert crash.notice and "restarted" in crash.notice
    assert_fresh_run_works(sb)
    require(sb, "unprivileged")
    escalate = sb.run("import ctypes\nlibc = ctypes.CDLL(None)\nprint(libc.setuid(0), libc.setgid(0))")
    assert escalate.stdout == "-1 -1\n"
    assert_fresh_run_works(sb)


def test_privileged_operations_fail(sb: Sandbox) -> None:
    """Even where the code keeps uid 0 (landlock as root), no capability is left to use."""
    require(sb, "no-capabilities")
    result = sb.run(
        "import os\nopen('mine', 'w').close()\n"
        "for op in (lambda: os.chown('mine', 4321, 4321), lambda: os.nice(-5),\n"
        "           lambda: os.chroot('.')):\n"
        "    try:\n        op()\n        print('allowed')\n"
        "    except OSError as e:\n        print(type(e).__name__)"
    )
    assert "allowed" not in result.stdout and result.stdout.count("Error") == 3, result
    assert os.stat(sb.workspace / "mine").st_uid != 4321
    assert_fresh_run_works(sb)


def test_exit_and_system_exit(sb: Sandbox) -> None:
    soft = sb.run("kept = 1\nraise SystemExit(0)")
    assert "SystemExit" in (soft.error or "") and not soft.state_lost
    assert sb.run("kept").stdout == "1\n"
    hard = sb.run("import os\nos._exit(3)")
    assert hard.killed_reason == "crashed" and "status 3" in (hard.notice or "")
    assert_fresh_run_works(sb)
