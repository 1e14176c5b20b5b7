"""The sandbox's own Python environment: the interpreter and packages agent code gets.

Why apart from the server's: agent code needs the scientific stack CodeAct tasks use
(numpy, pandas, scipy, matplotlib, scikit-learn), which the server does not, and it must
not see the server's packages (fastapi, llama_cpp, ``server``, ``models``): they are of no
use to it, they widen what untrusted code can reach, and upgrading one side must not break
the other.

Where it lives: a plain venv (stdlib ``venv`` + pip), by default in the user's data
directory, ``$XDG_DATA_HOME/codeact-server/sandbox-env`` (``~/.local/share/...``), or
wherever ``--sandbox-env`` / ``CODEACT_SANDBOX_ENV`` points. ``codeact-server sandbox
setup`` makes it (``make serve`` and ``make test`` run that), installing
``requirements-sandbox.txt`` (the one list of pins, shipped inside this package so a wheel
install has it) plus any ``--requirements FILE``; offline, from a bundle's wheels. A stamp
file records which requirement files (by content hash) went in, so a repeated setup with
nothing new costs a file read. ``--sandbox-python PATH`` bypasses all of this: that
interpreter is used as it is.

The worker itself needs only the stdlib and this package's worker modules (see
``sandbox/worker/main.py``), so any CPython 3.11+ can host it.

Stdlib only: settings and the CLI import it without loading the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import SandboxEnvError

REQUIREMENTS = Path(__file__).resolve().parent / "requirements-sandbox.txt"
STAMP_NAME = ".codeact-sandbox.json"
#: Modules of the server's own environment that agent code must not be able to import.
SERVER_ONLY = ("fastapi", "uvicorn", "llama_cpp", "server", "models")
#: What pooled workers import before a session gets them (setting ``sandbox_preimport``).
DEFAULT_PREIMPORT = ("numpy", "pandas", "matplotlib.pyplot")
INSPECT_TIMEOUT_S = 60.0

_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_INSPECT = """
import importlib.metadata as md, importlib.util as util, json, sys
names, server_only = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
print(json.dumps({
    "executable": sys.executable, "version": sys.version.split()[0],
    "prefix": sys.prefix, "base_prefix": sys.base_prefix,
    "packages": {n: version(n) for n in names},
    "server_importable": [m for m in server_only if util.find_spec(m) is not None],
}))
"""


def default_env_dir() -> Path:
    """``$XDG_DATA_HOME/codeact-server/sandbox-env``, else ``~/.local/share/codeact-server/sandbox-env``."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "codeact-server" / "sandbox-env"


def env_python(env_dir: Path) -> Path:
    """The venv's interpreter. Not resolved: a venv is recognised by the path it is run as."""
    return Path(env_dir) / "bin" / "python"


def requirement_names(files: Sequence[Path] = (REQUIREMENTS,)) -> list[str]:
    """Distribution names listed in requirement files (comments, options and blanks skipped)."""
    names: list[str] = []
    for file in files:
        for line in Path(file).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            match = _NAME.match(line) if line and not line.startswith("-") else None
            if match and match[1] not in names:
                names.append(match[1])
    return names


@dataclass(frozen=True)
class EnvInfo:
    """What an interpreter offers agent code, as `/health` and `sandbox info` show it."""

    python: str
    version: str
    prefix: str
    base_prefix: str
    managed: bool
    packages: dict[str, str | None]
    server_importable: list[str]

    @property
    def missing(self) -> list[str]:
        return [name for name, version in self.packages.items() if version is None]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "stack_present": not self.missing, "missing": self.missing}


def inspect(python: Path, *, managed: bool, names: Sequence[str] | None = None) -> EnvInfo:
    """Ask ``python`` for its version, prefixes, package versions and server-only imports."""
    names = list(names) if names is not None else requirement_names()
    try:
        done = subprocess.run(
            [str(python), "-I", "-c", _INSPECT, json.dumps(names), json.dumps(SERVER_ONLY)],
            capture_output=True,
            text=True,
            timeout=INSPECT_TIMEOUT_S,
            cwd="/",
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxEnvError(f"cannot run the sandbox interpreter {python}: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise SandboxEnvError(f"the sandbox interpreter {python} does not work: {last}")
    try:
        raw = json.loads(done.stdout)
    except ValueError as exc:
        raise SandboxEnvError(f"the sandbox interpreter {python} gave no answer: {done.stdout[:200]!r}") from exc
    return EnvInfo(
        python=str(python),
        version=raw["version"],
        prefix=raw["prefix"],
        base_prefix=raw["base_prefix"],
        managed=managed,
        packages=raw["packages"],
        server_importable=raw["server_importable"],
    )


@functools.lru_cache(maxsize=8)
def _inspect_cached(python: str, managed: bool, _stamp_mtime: int | None) -> EnvInfo:
    return inspect(Path(python), managed=managed)


def inspect_once(python: Path, *, managed: bool) -> EnvInfo:
    """`inspect`, remembered for this process until a managed env's setup runs again.

    A server inspects once at start; tests build many apps in one process.
    """
    try:
        stamp = (Path(python).parent.parent / STAMP_NAME).stat().st_mtime_ns if managed else None
    except OSError:
        stamp = None
    return _inspect_cached(str(python), managed, stamp)


def resolve(python: Path | None, env_dir: Path) -> tuple[Path, bool]:
    """(interpreter for agent code, whether it is the managed env); raises with the fix.

    An explicit ``python`` is taken as it is. Otherwise the managed env must exist and its
    setup must have finished (the stamp is written last), or the error says what to run.
    """
    if python is not None:
        if not (Path(python).is_file() and os.access(python, os.X_OK)):
            raise SandboxEnvError(f"--sandbox-python {python} is not an executable file")
        return Path(python), False
    candidate = env_python(env_dir)
    fix = "codeact-server sandbox setup" + ("" if Path(env_dir) == default_env_dir() else f" --sandbox-env {env_dir}")
    if not candidate.exists():
        raise SandboxEnvError(
            f"the sandbox environment is missing ({env_dir}): run `{fix}` (or `make serve`), "
            "or pass --sandbox-python PATH"
        )
    if not (Path(env_dir) / STAMP_NAME).is_file():
        raise SandboxEnvError(
            f"the sandbox environment at {env_dir} is incomplete (its setup did not finish): run `{fix}`"
        )
    return candidate, True


def _digest(file: Path) -> str:
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


def _read_stamp(env_dir: Path) -> dict[str, Any]:
    try:
        stamp = json.loads((env_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


@contextlib.contextmanager
def _locked(env_dir: Path) -> Iterator[None]:
    """One setup at a time per env (two `make test` runs may start together)."""
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(env_dir.parent / f".{env_dir.name}.lock", "w") as lock:  # noqa: PTH123
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def setup(
    env_dir: Path,
    *,
    requirements: Sequence[Path] = (),
    wheels_dir: Path | None = None,
    base_python: str | None = None,
    clear: bool = False,
    say: Callable[[str], object] = print,
) -> EnvInfo:
    """Create or update the managed env with the stack (and ``requirements``); return its info.

    ``wheels_dir``: install offline from these wheels only (a bundle's), never the network.
    pip's own output goes to the terminal; a failure raises ``SandboxEnvError`` and the
    stamp does not gain what failed, so the next setup tries again.
    """
    env_dir = Path(env_dir).absolute()
    files = [REQUIREMENTS, *(Path(r) for r in requirements)]
    for file in files:
        if not file.is_file():
            raise SandboxEnvError(f"requirements file {file} does not exist")
    python = env_python(env_dir)
    with _locked(env_dir):
        stamp = {} if clear else _read_stamp(env_dir)
        installed: dict[str, str] = dict(stamp.get("installed", {}))
        wanted = {_digest(f): str(f) for f in files}
        if python.exists() and not clear and wanted.keys() <= installed.keys():
            say(f"sandbox environment up to date: {env_dir}")
            return inspect(python, managed=True, names=requirement_names(files))
        if clear or not python.exists():
            # A new venv is unusable until the stack is in: no stamp until then. An existing
            # one keeps its stamp while packages are added, so a bad extra requirements file
            # does not take away a working environment.
            (env_dir / STAMP_NAME).unlink(missing_ok=True)
            say(f"creating the sandbox environment in {env_dir}")
            _run(
                [base_python or sys.executable, "-m", "venv", *(["--clear"] if clear else []), str(env_dir)],
                "create the sandbox venv",
            )
            installed = {}
        source = f"the wheels in {wheels_dir}" if wheels_dir else "the package index"
        say(f"installing the sandbox packages from {source} ({', '.join(str(f) for f in files)})")
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
        if wheels_dir is not None:
            pip += ["--no-index", "--find-links", str(wheels_dir)]
        for file in files:
            pip += ["-r", str(file)]
        _run(pip, "install the sandbox packages")
        info = inspect(python, managed=True, names=requirement_names(files))
        if info.missing:
            raise SandboxEnvError(f"pip finished but these packages are missing: {', '.join(info.missing)}")
        installed.update(wanted)
        stamp = {"python": info.version, "installed": installed}
        (env_dir / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    say(f"sandbox environment ready: {python} (Python {info.version})")
    return info


def _run(command: list[str], what: str) -> None:
    try:
        code = subprocess.run(command, check=False).returncode
    except OSError as exc:
        raise SandboxEnvError(f"could not {what}: {exc}") from exc
    if code != 0:
        raise SandboxEnvError(f"could not {what}: `{' '.join(command[:4])} ...` exited with {code} (output above)")
