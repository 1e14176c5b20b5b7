"""Build llama-cpp-python with llama.cpp's Vulkan backend once per machine: a GPU for the tests.

Why: we exist to offload a model to a GPU, and a lent GPU is rare and short (issue 37). Mesa's
lavapipe (Debian ``mesa-vulkan-drivers``) is a Vulkan device that runs on the CPU, so with
llama.cpp's Vulkan backend every machine has a GPU to offload to: the offload path (layers
on a device, the GPU default of ``--parallel``, the load order) runs in the tests. The build is
the same vendored llama.cpp the project's own llama-cpp-python uses (the version pinned in
``pyproject.toml``), installed the way a user with a Vulkan GPU installs it:
``CMAKE_ARGS="-DGGML_VULKAN=on" pip install llama-cpp-python==X`` into a venv of its own.

1. checks that the Vulkan headers and ``glslc`` are installed (``make system-deps-vulkan``:
   ``libvulkan-dev``, ``spirv-headers``, ``glslc``, ``mesa-vulkan-drivers``). Debian 12's
   Vulkan headers (1.3.239) are too old for this ggml-vulkan: it compiles against
   ``VK_EXT_layer_settings`` (``error: 'LayerSettingEXT' is not a member of 'vk'``). Then
   Debian 13's ``libvulkan-dev`` (``HEADERS``, pinned; apt checks it against the signed index)
   is downloaded with apt from a private source list, unpacked into the cache and used for its
   headers only: the binaries still link and run against the system's Vulkan loader, which
   resolves every entry point at run time (vulkan.hpp's dynamic dispatcher);
2. makes ``~/.cache/codeact-server/vulkan/<version>/venv`` (``$XDG_CACHE_HOME`` honoured;
   ``--cache-dir`` or ``CODEACT_VULKAN_CACHE`` override), outside any clone, so a machine pays
   the build once, and installs llama-cpp-python from its sdist into it with
   ``-DGGML_VULKAN=on`` under ``nice`` (pip's wheel cache is bypassed: it would hand back the
   CPU wheel, which has the same name);
3. checks, in a fresh process of that venv, that the build offloads and sees a Vulkan device,
   and writes ``build-info.json`` (version, flags, seconds, the devices it saw).

The tests do not run that venv's interpreter: they run the clone's ``codeact-server serve``
with ``--llama-lib`` set to the venv's ``llama_cpp/lib`` (same llama-cpp-python version, so
the same ctypes bindings over a libllama whose ggml carries the Vulkan backend). Idempotent:
with the build cached it only re-checks it; a file lock makes concurrent callers wait for one
build. Run: ``python -m benchmarks.vulkan_build`` (prints the library folder on stdout).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.llama_server_build import BuildError, _run

REPO = Path(__file__).resolve().parent.parent
CMAKE_ARGS = "-DGGML_VULKAN=on"
#: What the check prints from inside the built venv: the offload flag and the ggml devices.
PROBE = """
import ctypes, json, pathlib, llama_cpp
llama_cpp.llama_backend_init()
ggml = ctypes.CDLL(str(pathlib.Path(llama_cpp.__file__).parent / "lib" / "libggml.so"))
ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
for name in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
    getattr(ggml, name).restype = ctypes.c_char_p
    getattr(ggml, name).argtypes = [ctypes.c_void_p]
devices = []
for i in range(ggml.ggml_backend_dev_count()):
    dev = ggml.ggml_backend_dev_get(i)
    devices.append({"name": ggml.ggml_backend_dev_name(dev).decode(),
                    "description": ggml.ggml_backend_dev_description(dev).decode()})
print(json.dumps({"version": llama_cpp.__version__, "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
                  "devices": devices}))
"""


#: Debian 13's Vulkan headers, for a system whose own lack ``VK_EXT_layer_settings``.
HEADERS = ("libvulkan-dev", "1.4.309.0-1", "http://deb.debian.org/debian trixie main")
SYSTEM_HEADER = Path("/usr/include/vulkan/vulkan_core.h")


def headers_too_old(header: Path = SYSTEM_HEADER) -> bool:
    """Whether the system's Vulkan headers lack the extension this ggml-vulkan compiles against."""
    return not header.exists() or "VK_EXT_layer_settings" not in header.read_text(errors="replace")


def newer_headers(version_dir: Path) -> Path:
    """The include folder of ``HEADERS``, downloaded with apt (private lists) and unpacked once."""
    package, version, source = HEADERS
    target = version_dir / f"{package}_{version}"
    include = target / "usr" / "include"
    if (include / "vulkan" / "vulkan.hpp").exists():
        return include
    apt = version_dir / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(f"deb {source}\n")
    options = [f"-oDir::Etc::SourceList={apt / 'sources.list'}", "-oDir::Etc::SourceParts=/dev/null",
               f"-oDir::State::Lists={apt / 'lists'}", "-oAPT::Architectures=amd64"]  # fmt: skip
    _run(["apt-get", *options, "update", "-qq"], f"apt-get update ({source})")
    _run(["apt-get", *options, "download", f"{package}={version}"], f"apt-get download {package}={version}", cwd=apt)
    debs = sorted(apt.glob(f"{package}_*.deb"))
    if not debs:
        raise BuildError(f"apt-get download left no {package} .deb in {apt}")
    _run(["dpkg-deb", "-x", str(debs[-1]), str(target)], f"dpkg-deb -x {debs[-1].name}")
    if not (include / "vulkan" / "vulkan.hpp").exists():
        raise BuildError(f"{debs[-1].name} has no usr/include/vulkan/vulkan.hpp")
    return include


def pinned_version(pyproject: Path = REPO / "pyproject.toml") -> str:
    """The llama-cpp-python version the project pins: the Vulkan build must be the same one."""
    match = re.search(r'"llama-cpp-python==([^"]+)"', pyproject.read_text())
    if not match:
        raise BuildError(f"{pyproject} pins no llama-cpp-python==X")
    return match.group(1)


def cache_root() -> Path:
    """Where the Vulkan venvs live: outside the clone, shared by every checkout on the machine."""
    if override := os.environ.get("CODEACT_VULKAN_CACHE"):
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "codeact-server" / "vulkan"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def library_dir(venv: Path) -> Path:
    """The folder of the venv's ``libllama.so`` (what ``serve --llama-lib`` takes)."""
    found = sorted(venv.glob("lib/python*/site-packages/llama_cpp/lib/libllama.so"))
    if not found:
        raise BuildError(f"no llama_cpp/lib/libllama.so in {venv}")
    return found[0].parent


def preflight() -> None:
    """The Debian packages the Vulkan backend builds and runs with, named when missing."""
    missing = []
    if shutil.which("glslc") is None:
        missing.append("glslc")
    if not any(Path(d, "vulkan", "vulkan.h").exists() for d in ("/usr/include", "/usr/local/include")):
        missing.append("libvulkan-dev")
    if not Path("/usr/share/cmake/SPIRV-Headers").exists():
        missing.append("spirv-headers")
    if not list(Path("/usr/share/vulkan/icd.d").glob("lvp_icd*.json")):
        missing.append("mesa-vulkan-drivers (lavapipe)")
    if shutil.which("cmake") is None:
        missing.append("cmake")
    if missing:
        raise BuildError(f"missing: {', '.join(missing)} (as root: make system-deps-vulkan)")


def probe(venv: Path) -> dict[str, object]:
    """Import the venv's llama_cpp in a fresh process; raises unless it offloads to a Vulkan device."""
    # ggml-vulkan skips CPU-type Vulkan devices (lavapipe is one) unless they are named.
    env = {**os.environ, "GGML_VK_VISIBLE_DEVICES": os.environ.get("GGML_VK_VISIBLE_DEVICES", "0")}
    done = subprocess.run([str(venv_python(venv)), "-c", PROBE], capture_output=True, text=True, timeout=120, env=env)
    if done.returncode != 0:
        raise BuildError(f"the Vulkan venv's llama_cpp does not load: {done.stderr.strip()[-1500:]}")
    info: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    names = " ".join(str(d) for d in info["devices"]).lower()  # type: ignore[attr-defined]
    if not info["gpu_offload"] or "vulkan" not in names:
        raise BuildError(f"the build in {venv} does not offload to a Vulkan device: {info}")
    return info


def ensure_vulkan_venv(version: str | None = None, *, root: Path | None = None, jobs: int = 2, nice: int = 10) -> Path:
    """The cached venv with llama-cpp-python ``version`` built for Vulkan; built when missing."""
    version = version or pinned_version()
    version_dir = (root or cache_root()) / version
    venv = version_dir / "venv"
    version_dir.mkdir(parents=True, exist_ok=True)
    with (version_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another caller may be building: wait for it
        if (version_dir / "build-info.json").exists():
            try:
                probe(venv)
                return venv
            except (BuildError, OSError, subprocess.SubprocessError) as exc:
                print(f"rebuilding: {exc}", file=sys.stderr)
        preflight()
        print(f"building llama-cpp-python {version} with {CMAKE_ARGS} in {venv} (about 30 minutes on 2 cores)",
              file=sys.stderr, flush=True)  # fmt: skip
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
        pip = [str(venv_python(venv)), "-m", "pip"]
        _run([*pip, "install", "--quiet", "--upgrade", "pip"], "pip upgrade")
        cmake_args = CMAKE_ARGS
        if headers_too_old():
            cmake_args += f" -DVulkan_INCLUDE_DIR={newer_headers(version_dir)}"
        env_before = dict(os.environ)
        os.environ.update(CMAKE_ARGS=cmake_args, CMAKE_BUILD_PARALLEL_LEVEL=str(jobs))
        try:
            _run(
                [
                    *pip,
                    "install",
                    "-v",
                    "--no-cache-dir",
                    "--no-binary",
                    "llama-cpp-python",
                    f"llama-cpp-python=={version}",
                ],
                f"pip install llama-cpp-python=={version} with {cmake_args}",
                log=version_dir / "build.log",
                nice=nice,
            )
        finally:
            os.environ.clear()
            os.environ.update(env_before)
        seconds = round(time.monotonic() - started, 1)
        info = {
            "llama_cpp_python": version,
            "cmake_args": cmake_args,
            "build_seconds": seconds,
            "jobs": jobs,
            "nice": nice,
            "probe": probe(venv),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (version_dir / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
        return venv


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vulkan_build", description=__doc__.split("\n")[0])
    parser.add_argument("--version", help="llama-cpp-python version (default: the one pyproject.toml pins)")
    parser.add_argument("--cache-dir", type=Path, help=f"cache root (default {cache_root()})")
    parser.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (default 2)")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the build (default 10; 0 = none)")
    args = parser.parse_args(argv)
    try:
        venv = ensure_vulkan_venv(args.version, root=args.cache_dir, jobs=args.jobs, nice=args.nice)
        print(library_dir(venv))
    except BuildError as exc:
        print(f"Vulkan build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
