"""How a worker is confined: detect what this machine allows and build the command line.

Levels, strongest first (reported as `Sandbox.isolation` and in `/health`); what each
promises is `guarantees()`, the one list the tests and the README follow:

- ``namespaces``: bubblewrap. New pid, ipc, uts, mount (and, unless `network=True`, net)
  namespaces; the system, the interpreter and this package are bound read-only, the
  session's workspace is the only writable bind (plus a private /tmp on the session's
  disk). When the server is root the worker also drops to its own uid, so RLIMIT_NPROC
  holds (root ignores it) and the code cannot signal the server.
- ``landlock``: no namespaces (Docker's default seccomp profile, user namespaces off), but
  the kernel's Landlock (ABI 6+) confines the worker from inside: read-only system and
  interpreter, read-write only the workspace and its tmp, no TCP bind/connect, no signals
  or abstract unix sockets outside the sandbox, no /proc; plus a seccomp filter (no socket
  but AF_UNIX, no ptrace, no io_uring); under a root server, a uid of its own. Needs neither root nor
  user namespaces. See `sandbox/confine/landlock.py`.
- ``rlimits+uid``: neither, but the worker runs under its own unprivileged uid:
  rlimits hold, other sessions' workspaces (0700) and the server's /proc are unreadable.
  The network is *not* blocked and the file system is writable wherever the uid may write.
- ``rlimits-only``: none of that: rlimits, process group and watchdogs only. The code runs
  as the server's user; say so loudly (a warning is logged at detection).

Detection really starts the interpreter confined once per level, because "installed" is
not "allowed" (user namespaces may be disabled, seccomp may forbid mounts or Landlock).
`problem()` keeps the reason a level is unavailable, for logs, errors and tests.

The interpreter is a parameter (default: the server's own): the worker may run in another
environment, and that environment's prefixes are what must be visible inside, wherever it
is installed, /tmp included (the private /tmp is mounted first, the interpreter over it).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Literal

from sandbox.confine.plan import Level, Plan
from sandbox.errors import SandboxError

log = logging.getLogger(__name__)

Requested = Literal["auto", "namespaces", "landlock", "rlimits"]
#: Strongest first.
LEVELS: tuple[Level, ...] = ("namespaces", "landlock", "rlimits+uid", "rlimits-only")
REQUESTS: tuple[Requested, ...] = ("auto", "namespaces", "landlock", "rlimits")

PACKAGE_DIR = Path(__file__).resolve().parents[1]
WORKER_PATH = PACKAGE_DIR / "worker" / "main.py"
#: Sandbox uids are taken from here; far above ordinary users and subuid ranges.
UID_BASE = 1_900_000_000
#: Where the workspace appears inside the namespaces (the host path is not revealed).
INNER_WORKSPACE = "/workspace"
UID_SPAN = 1_000_000
PROBE_TIMEOUT_S = 20

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/fonts",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/hosts",
    "/etc/matplotlibrc",
)
#: Landlock only: what else an interpreter reads (CPU topology for BLAS and glibc). Not
#: /proc: Landlock's ptrace rule does not stop reading /proc/<server>/environ (checked on
#: Linux 6.18), and without a pid namespace /proc shows every process of the host.
_LANDLOCK_READ_EXTRA = ("/sys/devices/system/cpu", "/dev/urandom", "/dev/random", "/dev/zero")
_LANDLOCK_WRITE_EXTRA = ("/dev/null",)

_GUARANTEES: dict[Level, frozenset[str]] = {
    "namespaces": frozenset(
        {
            "network",
            "filesystem",
            "other-sessions",
            "server-signals",
            "server-proc",
            "nproc",
            "unprivileged",
            "no-capabilities",
        }
    ),
    "landlock": frozenset(
        {"network", "filesystem", "other-sessions", "server-signals", "server-proc", "no-capabilities"}
    ),
    "rlimits+uid": frozenset(
        {"other-sessions", "server-signals", "server-proc", "nproc", "unprivileged", "no-capabilities"}
    ),
    "rlimits-only": frozenset(),
}


class IsolationUnavailable(SandboxError):
    """An explicitly requested isolation level cannot be had on this machine (with why)."""


def guarantees(level: Level, uid: int | None) -> frozenset[str]:
    """What a worker at `level` (running as sandbox `uid`, or the server's user) promises.

    ``nproc``: RLIMIT_NPROC contains a fork bomb (root ignores it). ``unprivileged``: the
    code cannot become root. ``no-capabilities``: it holds none that matter (at landlock
    under a root server its uid keeps CAP_DAC_READ_SEARCH only, see capabilities.py).
    """
    promised = set(_GUARANTEES[level])
    if level == "landlock" and (uid is not None or os.getuid() != 0):
        promised |= {"nproc", "unprivileged"}
    return frozenset(promised)


def _default(python: str | None) -> str:
    return python or sys.executable


@functools.cache
def interpreter_dirs(python: str | None = None) -> tuple[str, ...]:
    """Directories `python` needs read-only: its prefixes, its real binary's dir, this package.

    Asked of the interpreter itself (run once, cached): a venv's prefix is not the server's.
    """
    python = _default(python)
    if python == sys.executable:
        facts = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        try:
            out = subprocess.run(
                [
                    python,
                    "-I",
                    "-c",
                    "import json, sys; print(json.dumps([sys.prefix, "
                    "sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]))",
                ],
                capture_output=True,
                timeout=PROBE_TIMEOUT_S,
                env={"PATH": "/usr/bin:/bin"},
                check=True,
            )
            facts = json.loads(out.stdout)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            raise SandboxError(f"cannot ask interpreter {python} for its prefixes: {exc}") from exc
    dirs = {os.path.realpath(d) for d in facts} | {os.path.abspath(d) for d in facts}
    dirs.add(str(PACKAGE_DIR))
    exe = os.path.realpath(python)
    if not any(exe.startswith(d + os.sep) for d in dirs):
        dirs.add(os.path.dirname(exe))
    dirs.discard("/")
    # Drop directories inside another one: one bind (or one Landlock rule) covers them.
    return tuple(d for d in sorted(dirs) if not any(d.startswith(o + os.sep) for o in dirs))


def python_dirs() -> list[str]:
    """The server interpreter's directories (kept for callers that predate `interpreter_dirs`)."""
    return list(interpreter_dirs())


def scrubbed_env(home: str, tmp: str) -> dict[str, str]:
    """The whole environment the code sees: nothing inherited from the server (API keys)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "MPLBACKEND": "module://sandbox.worker.mpl_backend",
        "MPLCONFIGDIR": tmp,
        "XDG_CACHE_HOME": tmp,
        "MALLOC_ARENA_MAX": "2",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def uid_can_reach(paths: list[str] | tuple[str, ...]) -> bool:
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


def _bwrap_argv(bwrap: str, workspace: str, tmp: str, network: bool, as_root: bool, dirs: tuple[str, ...]) -> list[str]:
    argv = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
    ]
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
    # The private /tmp first: an interpreter installed under /tmp is bound over it below,
    # not hidden by it (mount order is bind order).
    argv += ["--proc", "/proc", "--dev", "/dev", "--bind", tmp, "/tmp"]
    # bwrap would create the parents of these binds 0700 (e.g. /root): make them traversable.
    parents = {str(p) for d in dirs for p in Path(d).parents if str(p) not in ("/", "/tmp")}
    for parent in sorted(parents, key=lambda p: p.count("/")):
        if not any(parent == s or parent.startswith(s + "/") for s in _SYSTEM_DIRS):
            argv += ["--perms", "0755", "--dir", parent]
    for directory in dirs:
        argv += ["--ro-bind", directory, directory]
    argv += ["--bind", workspace, INNER_WORKSPACE, "--chdir", "/"]
    if network:
        argv += ["--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"]
    return argv + ["--"]


def landlock_rules(workspace: str, tmp: str, network: bool, dirs: tuple[str, ...]) -> dict[str, object]:
    """What the worker's Landlock ruleset allows (see `sandbox/confine/landlock.py`)."""
    read = [d for d in (*_SYSTEM_DIRS, *_ETC_FILES, *_LANDLOCK_READ_EXTRA) if os.path.exists(d)]
    write = [workspace, tmp, *(p for p in _LANDLOCK_WRITE_EXTRA if os.path.exists(p))]
    return {"read": [*read, *dirs], "write": write, "network": network}


@functools.cache
def _bwrap_problem(python: str) -> str | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    from sandbox.workspace import SessionDirs

    # Directories made as for a real session (owned by its uid when root), so the probe
    # meets the same permissions the worker will.
    as_root = os.getuid() == 0
    uid = UIDS.acquire() if as_root else None
    dirs = SessionDirs.create(None, uid)
    try:
        argv = _bwrap_argv(
            bwrap, str(dirs.workspace), str(dirs.tmp), network=False, as_root=as_root, dirs=interpreter_dirs(python)
        )
        probe = subprocess.run(
            argv + [python, "-I", "-c", "pass"],
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            env={"PATH": "/usr/bin:/bin"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap found at {bwrap} but could not run: {exc}"
    finally:
        dirs.remove()
        UIDS.release(uid)
    if probe.returncode != 0:
        return (
            f"bubblewrap found at {bwrap} but refused to sandbox here: {probe.stderr.decode(errors='replace').strip()}"
        )
    return None


_LANDLOCK_PROBE_CODE = """
try:
    open({outside!r}, 'w').close()
    print('escaped')
except PermissionError:
    print('confined')
"""


@functools.cache
def _landlock_problem(python: str) -> str | None:
    """Start a real worker at this level (its uid, capabilities, Landlock and seccomp) and
    have it try to write next to its workspace, where file modes would let it."""
    if not sys.platform.startswith("linux"):
        return "Landlock is a Linux feature"
    from sandbox.confine import landlock
    from sandbox.process import WorkerProcess
    from sandbox.workspace import SessionDirs

    abi = landlock.abi_version()
    if abi < landlock.MIN_ABI:
        return (
            f"the kernel offers Landlock ABI {abi}; {landlock.MIN_ABI}+ is needed (Linux 6.12+ "
            "with landlock among the LSMs, and its system calls allowed by any seccomp profile)"
        )
    uid = UIDS.acquire() if wants_uid("landlock") else None
    dirs = SessionDirs.create(None, uid)
    try:
        proc = WorkerProcess(plan("landlock", dirs.workspace, dirs.tmp, False, uid, python))
        try:
            code = _LANDLOCK_PROBE_CODE.format(outside=str(dirs.root / "escaped"))
            reply = proc.request({"op": "run", "id": 0, "code": code, "hard_cap": 10_000}, timeout=PROBE_TIMEOUT_S)
        finally:
            proc.close()
    except (SandboxError, OSError, TimeoutError) as exc:
        return f"a worker could not start under Landlock: {exc}"
    finally:
        dirs.remove()
        UIDS.release(uid)
    if reply.get("stdout") != "confined\n":
        return f"a worker under Landlock was not confined: {reply!r}"
    return None


def problem(level: Level, python: str | None = None) -> str | None:
    """Why `level` is unavailable here for `python` (None: it works). Probed once, cached."""
    python = _default(python)
    if level == "namespaces":
        return _bwrap_problem(python)
    if level == "landlock":
        return _landlock_problem(python)
    if level == "rlimits+uid":
        if os.getuid() != 0:
            return "needs a root server to hand each worker its own uid"
        if not uid_can_reach(interpreter_dirs(python)):
            return f"the interpreter's directories {interpreter_dirs(python)} are not readable by other uids"
        return None
    return None


def bwrap_usable(python: str | None = None) -> str | None:
    """Path of a bubblewrap that really works here for `python`, or None."""
    return shutil.which("bwrap") if problem("namespaces", python) is None else None


@functools.cache
def detect(requested: Requested = "auto", python: str | None = None) -> Level:
    """The level for `requested`: auto is the strongest available, warning once if not the
    strongest; an explicit level is that level or `IsolationUnavailable` with the reason."""
    if requested not in REQUESTS:
        raise ValueError(f"unknown isolation level {requested!r}; one of {', '.join(REQUESTS)}")
    if requested in ("namespaces", "landlock"):
        reason = problem(requested, python)
        if reason is not None:
            raise IsolationUnavailable(f"{requested} isolation requested but unavailable: {reason}")
        return requested
    skipped: list[str] = []
    if requested == "auto":
        for level in ("namespaces", "landlock"):
            reason = problem(level, python)  # type: ignore[arg-type]
            if reason is None:
                if skipped:
                    log.warning("sandbox: using %r isolation (%s)", level, "; ".join(skipped))
                return level  # type: ignore[return-value]
            skipped.append(f"{level}: {reason}")
    reason = problem("rlimits+uid", python)
    if reason is None:
        log.warning(
            "sandbox: falling back to 'rlimits+uid': no network or file system isolation (%s)",
            "; ".join(skipped) or "requested",
        )
        return "rlimits+uid"
    log.warning(
        "sandbox: falling back to 'rlimits-only': the code runs as the server's user "
        "(%s); fork bombs, signals and file access are only partly contained (%s)",
        os.getuid(),
        "; ".join([*skipped, f"rlimits+uid: {reason}"]),
    )
    return "rlimits-only"


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


def wants_uid(level: Level, python: str | None = None) -> bool:
    """Whether sandboxes at this level get their own uid (only possible as root; `python`
    is accepted for callers that pass it, every interpreter is handled since landlock's
    capability hand-over)."""
    return os.getuid() == 0 and level in ("namespaces", "landlock", "rlimits+uid")


def plan(level: Level, workspace: Path, tmp: Path, network: bool, uid: int | None, python: str | None = None) -> Plan:
    """The command line, environment and uid for one worker at `level`, run by `python`."""
    python = _default(python)
    dirs = interpreter_dirs(python)
    config: dict[str, object] = {"uid": uid, "gid": uid}
    if level == "namespaces":
        bwrap = bwrap_usable(python)
        assert bwrap is not None
        prefix = _bwrap_argv(bwrap, str(workspace), str(tmp), network, as_root=os.getuid() == 0, dirs=dirs)
        env = scrubbed_env(INNER_WORKSPACE, "/tmp")
        config["cwd"] = INNER_WORKSPACE
    else:
        prefix = []
        config["parent_pid"] = os.getpid()
        config["cwd"] = str(workspace)
        env = scrubbed_env(str(workspace), str(tmp))
        if level == "landlock":
            config["landlock"] = landlock_rules(str(workspace), str(tmp), network, dirs)
            # No bind mount can open the way to an interpreter under /root: the uid keeps
            # CAP_DAC_READ_SEARCH, Landlock still decides what is readable (capabilities.py).
            config["keep_read_search"] = uid is not None and not uid_can_reach(dirs)
    argv = prefix + [python, "-I", str(WORKER_PATH), json.dumps(config)]
    return Plan(level=level, argv=argv, env=env, cwd="/", uid=uid)
