"""The wheels a bundle carries so the server installs on an air-gapped machine.

Run on the connected machine by ``bundle export --with-wheels PLATFORM``; the files land
in a directory that ``export_bundle`` then packs under ``wheels/``. pip does the work
(``pip download`` for a target platform and Python is exactly what it is for); this
module only decides what to ask for:

* the project's own wheel (``pip wheel --no-deps`` of the source tree; it is pure Python);
* every runtime dependency as a binary wheel for ``--platform`` / ``--python-version``;
* llama-cpp-python as its **sdist**: PyPI has no CPU wheel of it and a CUDA or Metal build
  must be compiled on the target anyway (``CMAKE_ARGS``), plus the pure-Python build
  backend it needs (scikit-build-core and its dependencies), which pip's isolated build
  then installs from the same ``--find-links`` folder. A C/C++ compiler and cmake must
  already be on the target machine;
* the sandbox environment's stack (``sandbox/requirements-sandbox.txt``: numpy, pandas,
  matplotlib, scikit-learn, ...) as binary wheels, so ``bundle import`` can make the venv
  agent code runs in (``codeact-server sandbox setup --wheels-dir``) without the network.

Everything here uses the network (PyPI or whatever ``PIP_INDEX_URL`` says); the import
side never does. The commands are built by a pure function so tests can check them.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from models.errors import ModelError

__all__ = ["PLATFORM_ALIASES", "WheelsError", "collect_wheels", "wheel_commands"]

PROJECT = "codeact-server"
SOURCE_ONLY = "llama-cpp-python"
# What llama-cpp-python's pyproject names as its build backend (build-system.requires).
BUILD_BACKEND = ("scikit-build-core[pyproject]>=0.9.2",)
# Friendly names for the platforms people actually deploy to; anything else is passed to
# pip as a platform tag. pip takes --platform literally (a manylinux_2_28 target does not
# match a manylinux_2_17 wheel, as matplotlib's are), so ``platform_tags`` lists the older
# compatible tags too.
PLATFORM_ALIASES = {
    "linux-x86_64": "manylinux_2_28_x86_64",
    "linux-aarch64": "manylinux_2_28_aarch64",
    "macos-arm64": "macosx_14_0_arm64",
}
_ROOT = Path(__file__).resolve().parents[2]


class WheelsError(ModelError):
    """pip could not fetch the wheels for the requested platform (one line, pip's reason)."""


def project_requirements(root: Path = _ROOT) -> list[Requirement]:
    """The runtime dependencies: from the source tree's pyproject when present, else installed metadata.

    The source tree wins because an editable install's metadata goes stale when
    pyproject.toml changes without a reinstall.
    """
    pyproject = root / "pyproject.toml"
    raw: list[str] | None = None
    if pyproject.is_file():
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        if data.get("project", {}).get("name") == PROJECT:
            raw = list(data["project"].get("dependencies", []))
    if raw is None:
        raw = importlib.metadata.requires(PROJECT) or []
    reqs = [Requirement(r) for r in raw]
    return [r for r in reqs if r.marker is None or "extra" not in str(r.marker)]


def platform_tags(tag: str) -> list[str]:
    """``tag`` and the older tags a machine of that platform also installs, newest first.

    manylinux_2_Y_ARCH: every glibc minor down to 2.17 (= manylinux2014), then 2010 and 1.
    macosx_N_M_arm64: every macOS down to 11.0, plus the universal2 builds. Other tags are
    taken as they are.
    """
    linux = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", tag)
    if linux and int(linux[1]) >= 17:
        arch = linux[2]
        newer = [f"manylinux_2_{minor}_{arch}" for minor in range(int(linux[1]), 16, -1)]
        return [
            *newer,
            *(
                f"{legacy}_{arch}"
                for legacy in ("manylinux2014", "manylinux_2_12", "manylinux2010", "manylinux_2_5", "manylinux1")
            ),
        ]
    mac = re.fullmatch(r"macosx_(\d+)_(\d+)_arm64", tag)
    if mac and int(mac[1]) >= 11:
        versions = [f"{major}_0" for major in range(int(mac[1]), 10, -1)]
        if mac[2] != "0":
            versions.insert(0, f"{mac[1]}_{mac[2]}")
        return [f"macosx_{v}_arm64" for v in versions] + [f"macosx_{v}_universal2" for v in [*versions, "10_9"]]
    return [tag]


def _target_env(tag: str, python_version: str) -> dict[str, str]:
    """Marker environment of the target machine, so ``; sys_platform == ...`` deps are right."""
    machine = tag.rsplit("_", 1)[-1] if "_" in tag else tag
    machine = {"64": "x86_64", "amd64": "AMD64"}.get(machine, machine)
    if tag.startswith("macosx"):
        system, platform, os_name = "Darwin", "darwin", "posix"
    elif tag.startswith("win"):
        system, platform, os_name = "Windows", "win32", "nt"
    else:
        system, platform, os_name = "Linux", "linux", "posix"
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": platform,
        "platform_system": system,
        "platform_machine": machine,
        "os_name": os_name,
    }


def _requires(name: str, extras: set[str], env: dict[str, str]) -> list[Requirement] | None:
    """Installed distribution ``name``'s dependencies for the target, or None if not installed."""
    try:
        raw = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    out = []
    for req in map(Requirement, raw):
        if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})):
            out.append(req)
    return out


def _split(reqs: list[Requirement], env: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """Sort requirements into (binary with deps, binary without deps, source only).

    pip refuses to resolve dependencies for another platform unless every file is a
    wheel, and llama-cpp-python has none. So a package that (transitively, as far as the
    locally installed metadata says) depends on it is fetched with ``--no-deps`` and its
    own dependencies are walked here instead; everything else lets pip resolve.
    """
    with_deps: dict[str, str] = {}
    no_deps: dict[str, str] = {}
    source: dict[str, str] = {}
    memo: dict[str, bool] = {}

    def tainted(name: str, seen: frozenset[str]) -> bool:
        if name not in memo:
            deps = _requires(name, set(), env) or []
            memo[name] = name == SOURCE_ONLY or any(
                _norm(d.name) not in seen and tainted(_norm(d.name), seen | {name}) for d in deps
            )
        return memo[name]

    def walk(req: Requirement) -> None:
        name = _norm(req.name)
        if name in no_deps or name in source:
            return
        if name == SOURCE_ONLY:
            source[name] = str(req)
            for dep in _requires(name, set(), env) or []:
                walk(dep)
            for backend in BUILD_BACKEND:
                with_deps.setdefault(_norm(Requirement(backend).name), backend)
        elif tainted(name, frozenset()):
            no_deps[name] = str(req)
            for dep in _requires(name, set(req.extras), env) or []:
                walk(dep)
        else:
            with_deps.setdefault(name, str(req))

    for req in reqs:
        walk(req)
    for name in no_deps:
        with_deps.pop(name, None)
    return list(with_deps.values()), list(no_deps.values()), list(source.values())


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def wheel_commands(
    platform: str,
    dest: Path,
    *,
    python_version: str | None = None,
    root: Path = _ROOT,
    extra_requirements: Sequence[Path] = (),
) -> list[list[str]]:
    """The pip invocations that fill ``dest`` for ``platform``; pure, for tests and --dry-run.

    ``extra_requirements``: requirement files whose wheels travel too (the CLI passes the
    sandbox environment's, so this layer needs no knowledge of the sandbox).
    """
    tag = PLATFORM_ALIASES.get(platform, platform)
    py = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    pip = [sys.executable, "-m", "pip"]
    with_deps, no_deps, source = _split(project_requirements(root), _target_env(tag, py))
    platforms = [arg for t in platform_tags(tag) for arg in ("--platform", t)]
    target = [*platforms, "--python-version", py, "--implementation", "cp", "--only-binary=:all:"]
    download = [*pip, "download", "--quiet", "--dest", str(dest)]
    commands = [[*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest), str(root)]]
    if with_deps:
        commands.append([*download, *target, *with_deps])
    if no_deps:
        commands.append([*download, *target, "--no-deps", *no_deps])
    if source:
        commands.append([*download, "--no-deps", "--no-binary=:all:", *source])
    commands.extend([*download, *target, "-r", str(file)] for file in extra_requirements)
    return commands


def collect_wheels(
    platform: str,
    dest: Path,
    *,
    python_version: str | None = None,
    extra_requirements: Sequence[Path] = (),
    run: Callable[[Sequence[str]], subprocess.CompletedProcess[str]] | None = None,
) -> dict[str, Any]:
    """Run the pip commands into ``dest``; return the manifest's ``wheels`` record.

    ``run`` is injectable so tests can stand in for pip without the network.
    """
    run = run or _run_pip
    dest.mkdir(parents=True, exist_ok=True)
    commands = wheel_commands(platform, dest, python_version=python_version, extra_requirements=extra_requirements)
    for command in commands:
        result = run(command)
        if result.returncode != 0:
            lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else f"exit code {result.returncode}"
            raise WheelsError(f"cannot fetch the wheels for {platform}: pip {command[3]} failed: {reason}")
    return {
        "platform": PLATFORM_ALIASES.get(platform, platform),
        "python_version": python_version or f"{sys.version_info.major}.{sys.version_info.minor}",
        "source_only": [SOURCE_ONLY],
        "install": "pip install --no-index --find-links wheels/ codeact-server",
        # `bundle import` runs this (offline) when the bundle carries the sandbox stack.
        "sandbox_setup": "codeact-server sandbox setup --wheels-dir wheels/",
    }


def _run_pip(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, check=False)
