"""How a worker is confined: detect what this machine allows and build the command line.

Levels, strongest first (reported as `Sandbox.isolation`):

- ``namespaces``: bubblewrap. New pid, ipc, uts, mount (and, unless `network=True`, net)
  namespaces; the system, the interpreter and this package are bound read-only, the
  session's workspace is the only writable bind (plus a private /tmp on the session's
  disk). When the server is root the worker also drops to its own uid, so RLIMIT_NPROC
  holds (root ignores it) and the code cannot signal the server.
- ``rlimits+uid``: no bubblewrap, but the worker runs under its own unprivileged uid:
  rlimits hold, other sessions' workspaces (0700) and the server's /proc are unreadable.
  The network is *not* blocked and the file system is writable wherever the uid may write.
- ``rlimits-only``: neither: rlimits, process group and watchdogs only. The code runs as
  the server's user; say so loudly (a warning is logged at detection).

Detection actually starts bubblewrap once, because "installed" is not "allowed" (user
namespaces may be disabled, or seccomp may forbid mounts in a container).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Level = Literal["namespaces", "rlimits+uid", "rlimits-only"]
Requested = Literal["auto", "namespaces", "rlimits"]

PACKAGE_DIR = Path(__file__).resolve().parent
WORKER_PATH = PACKAGE_DIR / "worker.py"
#: Sandbox uids are taken from here; far above ordinary users and subuid ranges.
UID_BASE = 1_900_000_000
#: Where the workspace appears inside the namespaces (the host path is not revealed).
INNER_WORKSPACE = "/workspace"
UID_SPAN = 1_000_000

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/ld.so.cache", "/etc/ld.so.conf",
    "/etc/ld.so.conf.d", "/etc/localtime", "/etc/timezone", "/etc/ssl", "/etc/ca-certificates",
    "/etc/alternatives", "/etc/fonts", "/etc/mime.types", "/etc/os-release", "/etc/hosts",
    "/etc/matplotlibrc",
)


@dataclass(frozen=True)
class Plan:
    """Everything needed to start one worker at a given level."""

    level: Level
    argv: list[str]
    env: dict[str, str]
    cwd: str
    uid: int | None


def python_dirs() -> list[str]:
    """Directories the worker's interpreter needs: base prefix, venv, extra site dirs."""
    dirs = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), str(PACKAGE_DIR)}
    exe = os.path.realpath(sys.executable)
    if not any(exe.startswith(d + os.sep) for d in dirs):
        dirs.add(os.path.dirname(exe))
    return sorted(dirs)


def scrubbed_env(home: str, tmp: str) -> dict[str, str]:
    """The whole environment the code sees: nothing inherited from the server (API keys)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "MPLBACKEND": "module://sandbox.mpl_backend",
        "MPLCONFIGDIR": tmp,
        "XDG_CACHE_HOME": tmp,
        "MALLOC_ARENA_MAX": "2",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def uid_can_reach(paths: list[str]) -> bool:
    """Whether an unrelated uid can traverse to and read these paths (others' bits)."""
    for path in paths:
        current = Path(path)
        for part in [current, *current.parents]:
            try:
                mode = part.stat().st_mode
            except OSError:
                return False
            if not mode & stat.S_IXOTH:
                return False
        if not Path(path).stat().st_mode & stat.S_IROTH:
            return False
    return True


def _bwrap_argv(bwrap: str, workspace: str, tmp: str, network: bool, as_root: bool) -> list[str]:
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if not network:
        argv.append("--unshare-net")
    if as_root:
        # Privileged bwrap (no user namespace) so the worker's uid is a real host uid that
        # RLIMIT_NPROC counts; keep only what the worker needs to drop to it.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user"]
    for directory in _SYSTEM_DIRS:
        if os.path.islink(directory):
            argv += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            argv += ["--ro-bind", directory, directory]
    for path in _ETC_FILES:
        argv += ["--ro-bind-try", path, path]
    # bwrap would create the parents of these binds 0700 (e.g. /root): make them traversable.
    parents = {str(p) for d in python_dirs() for p in Path(d).parents if str(p) != "/"}
    for parent in sorted(parents, key=lambda p: p.count("/")):
        if not any(parent == s or parent.startswith(s + "/") for s in _SYSTEM_DIRS):
            argv += ["--perms", "0755", "--dir", parent]
    for directory in python_dirs():
        argv += ["--ro-bind", directory, directory]
    argv += ["--proc", "/proc", "--dev", "/dev", "--bind", tmp, "/tmp",
             "--bind", workspace, INNER_WORKSPACE, "--chdir", "/"]
    if network:
        argv += ["--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"]
    return argv + ["--"]


@functools.cache
def bwrap_usable() -> str | None:
    """Path of a bubblewrap that really works here, or None (with the reason logged)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        argv = _bwrap_argv(bwrap, scratch, scratch, network=False, as_root=os.getuid() == 0)
        try:
            probe = subprocess.run(argv + [sys.executable, "-I", "-c", "pass"], capture_output=True,
                                   timeout=20, env={"PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("bubblewrap found at %s but could not run: %s", bwrap, exc)
            return None
    if probe.returncode != 0:
        log.warning("bubblewrap found at %s but refused to sandbox here: %s", bwrap,
                    probe.stderr.decode(errors="replace").strip())
        return None
    return bwrap


@functools.cache
def detect(requested: Requested = "auto") -> Level:
    """The strongest level available for `requested`; warns once when falling back."""
    as_root = os.getuid() == 0
    if requested in ("auto", "namespaces") and bwrap_usable():
        return "namespaces"
    if requested == "namespaces":
        raise RuntimeError("namespaces isolation requested but bubblewrap is not usable here")
    if as_root and uid_can_reach(python_dirs()):
        level: Level = "rlimits+uid"
        log.warning("sandbox: bubblewrap unavailable; falling back to %r: no network or file "
                    "system isolation (install Debian's 'bubblewrap')", level)
    else:
        level = "rlimits-only"
        log.warning("sandbox: falling back to 'rlimits-only': the code runs as the server's user "
                    "(%s) without namespaces; fork bombs, signals and file access are only "
                    "partly contained. Install 'bubblewrap'%s.", os.getuid(),
                    "" if not as_root else " or make the interpreter readable by other uids")
    return level


class UidAllocator:
    """Hands out a distinct host uid per live sandbox, so RLIMIT_NPROC is per sandbox."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_use: set[int] = set()
        self._next = UID_BASE + (os.getpid() * 7919) % (UID_SPAN // 2)

    def acquire(self) -> int:
        with self._lock:
            while self._next in self._in_use:
                self._next += 1
            uid = self._next
            self._in_use.add(uid)
            self._next = UID_BASE + (self._next + 1 - UID_BASE) % UID_SPAN
            return uid

    def release(self, uid: int | None) -> None:
        with self._lock:
            self._in_use.discard(uid)  # type: ignore[arg-type]


UIDS = UidAllocator()


def wants_uid(level: Level) -> bool:
    """Whether sandboxes at this level get their own uid (only possible as root)."""
    return os.getuid() == 0 and level in ("namespaces", "rlimits+uid")


def plan(level: Level, workspace: Path, tmp: Path, network: bool, uid: int | None) -> Plan:
    """The command line, environment and uid for one worker at `level`."""
    import json

    config: dict[str, object] = {"uid": uid, "gid": uid}
    if level == "namespaces":
        bwrap = bwrap_usable()
        assert bwrap is not None
        prefix = _bwrap_argv(bwrap, str(workspace), str(tmp), network, as_root=os.getuid() == 0)
        env = scrubbed_env(INNER_WORKSPACE, "/tmp")
        config["cwd"] = INNER_WORKSPACE
    else:
        prefix = []
        config["parent_pid"] = os.getpid()
        config["cwd"] = str(workspace)
        env = scrubbed_env(str(workspace), str(tmp))
    argv = prefix + [sys.executable, "-I", str(WORKER_PATH), json.dumps(config)]
    return Plan(level=level, argv=argv, env=env, cwd="/", uid=uid)
