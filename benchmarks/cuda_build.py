"""Build llama-cpp-python's CUDA wheel without a GPU or a system CUDA toolkit, from PyPI alone.

Why: a lent GPU comes for 15 minutes, and compiling CUDA there cost three of them (issue 37);
users without NVIDIA's toolkit installed meet the same wall. NVIDIA publishes its compiler and
libraries as Python packages, so this script, on any x86-64 Linux machine with gcc and cmake:

1. installs the pinned CUDA packages (``TOOLKIT``: nvcc, the C runtime headers, NVVM, the
   CUDA runtime, cuBLAS, CCCL) into a tool venv, ``~/.cache/codeact-server/cuda/tools-<cuda>/``
   (``$XDG_CACHE_HOME`` honoured; ``--cache-dir``/``CODEACT_CUDA_CACHE`` override);
2. makes their ``nvidia/cu13`` folder a toolkit CMake accepts: ``lib64`` (where ``nvcc.profile``
   looks) and unversioned ``libcudart.so``/``libcublas.so``/``libcublasLt.so`` links;
3. builds the wheel from the pinned sdist (``pyproject.toml``, unpacked once into ``src/`` so a
   kept CMake build folder stays valid) with ``pip wheel`` and the GPU check's flags
   (``-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=<arch>``, flash attention on, llama.cpp's tools
   in the same build), ``GGML_NATIVE=OFF`` (the wheel runs on another machine's CPU) and
   ``GGML_CUDA_NO_VMM=ON``, under ``nice``, into
   ``~/.cache/codeact-server/cuda/llama-cpp-python-<ver>-cu<cuda>-sm<arch>/wheels/``;
   the CMake build folder is kept beside it, so a killed build resumes.

   Why ``GGML_CUDA_NO_VMM``: with virtual memory management ggml links the driver library
   ``libcuda.so.1`` itself, so on a machine without the NVIDIA driver (a container started
   without ``--gpus``, a laptop whose driver is not loaded) ``import llama_cpp`` fails and
   nothing serves. Without it only the CUDA runtime opens the driver, at run time: no driver
   means no CUDA device, and ``serve`` goes on on the CPU with one warning
   (``models.engine.llama.engine``). It also needs no driver stub to link, which no PyPI
   package ships. The cost is ggml's legacy memory pool instead of the VMM one;
4. writes ``build-info.json``: packages, flags, seconds, the wheel's size, and what its
   ``libggml-cuda.so`` needs (``readelf -d``: ``libcudart.so.13``, ``libcublas.so.13``,
   ``libcuda.so.1``: the machine that runs it needs the CUDA 13 runtime and cuBLAS, as the
   GPU check's machine has, and a driver).

CUDA 13 because the GPU check's H200 runs CUDA 13 (``docs/deploy.md``); the wheel links
``libcudart.so.13``, which a CUDA 12 machine lacks (build with ``--cuda 12`` there; the
toolkit pins for 12 are not measured). Idempotent and locked like ``llama_server_build``.
Run: ``python -m benchmarks.cuda_build [--arch 90]`` (prints the wheel's path). The GPU
check carries it: ``python -m benchmarks.gpu.prepare --cuda-wheel``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.llama_server_build import BuildError, _run
from benchmarks.vulkan_build import pinned_version

#: PyPI packages of CUDA 13.0 (the oldest 13.x: a build runs on any 13.x runtime and driver).
TOOLKIT = {
    "13": (
        "nvidia-cuda-nvcc==13.0.88",
        "nvidia-cuda-crt==13.0.88",
        "nvidia-nvvm==13.0.88",
        "nvidia-cuda-runtime==13.0.96",
        "nvidia-cublas==13.0.2.14",
        "nvidia-cuda-cccl==13.0.85",
    ),
}
TOOLKIT_LABEL = {"13": "13.0"}
CMAKE_FLAGS = (
    "-DGGML_CUDA=ON",
    "-DGGML_CUDA_FA=ON",
    "-DGGML_CUDA_NCCL=OFF",
    "-DGGML_NATIVE=OFF",
    "-DGGML_CUDA_NO_VMM=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAVA_BUILD=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
)


def cache_root() -> Path:
    if override := os.environ.get("CODEACT_CUDA_CACHE"):
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "codeact-server" / "cuda"


def toolkit(root: Path, cuda: str) -> Path:
    """The tool venv's CUDA folder, installed and fixed up for CMake when needed."""
    venv = root / f"tools-{TOOLKIT_LABEL[cuda]}"
    python = venv / "bin" / "python"
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(venv)], "python -m venv (CUDA tools)")
    _run([str(python), "-m", "pip", "install", "--quiet", *TOOLKIT[cuda]], "pip install the CUDA packages")
    found = sorted(venv.glob(f"lib/python*/site-packages/nvidia/cu{cuda}/bin/nvcc"))
    if not found:
        raise BuildError(f"the CUDA packages left no nvidia/cu{cuda}/bin/nvcc in {venv}")
    top = found[0].parents[1]
    lib64 = top / "lib64"
    if not lib64.exists():
        lib64.symlink_to("lib")  # nvcc.profile links with -L$(TOP)/lib64
    for name in ("cudart", "cublas", "cublasLt"):
        link = top / "lib" / f"lib{name}.so"
        if not link.exists():
            link.symlink_to(f"lib{name}.so.{cuda}")
    return top


def unpacked_sdist(work: Path, version: str) -> Path:
    """The pinned sdist, downloaded and unpacked once into ``work/src`` (a fixed source path)."""
    source = work / "src"
    if (source / "pyproject.toml").exists():
        return source
    sdist = work / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.exists():
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
              "-d", str(work), f"llama-cpp-python=={version}"], "pip download the sdist")  # fmt: skip
    with tempfile.TemporaryDirectory(dir=work) as tmp, tarfile.open(sdist) as archive:
        archive.extractall(tmp, filter="data")
        Path(tmp, f"llama_cpp_python-{version}").replace(source)
    return source


def needed(wheel: Path) -> dict[str, list[str]]:
    """``readelf -d`` NEEDED entries of each shared library in ``wheel``."""
    result = {}
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if re.search(r"\.so(\.\d+)*$", member) and "/lib/" in member:
                path = Path(archive.extract(member, tmp))
                dump = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout
                result[member] = re.findall(r"\(NEEDED\)\s+Shared library: \[([^]]+)\]", dump)
    return result


def wheel_folder(arch: str, cuda: str = "13", root: Path | None = None) -> Path:
    return (root or cache_root()) / f"llama-cpp-python-{pinned_version()}-cu{TOOLKIT_LABEL[cuda]}-sm{arch}"


def cached_wheel(arch: str = "90", cuda: str = "13", root: Path | None = None) -> Path | None:
    """The finished wheel for ``sm_<arch>`` if one is cached (with its ``build-info.json``), else None."""
    work = wheel_folder(arch, cuda, root)
    wheels = sorted((work / "wheels").glob("llama_cpp_python-*.whl"))
    return wheels[0] if wheels and (work / "build-info.json").exists() else None


def ensure_cuda_wheel(
    arch: str = "90", cuda: str = "13", *, root: Path | None = None, jobs: int = 2, nice: int = 15
) -> Path:
    """The cached CUDA wheel of the pinned llama-cpp-python for ``sm_<arch>``; built when missing."""
    root = root or cache_root()
    version = pinned_version()
    work = wheel_folder(arch, cuda, root)
    work.mkdir(parents=True, exist_ok=True)
    with (work / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cached := cached_wheel(arch, cuda, root):
            return cached
        top = toolkit(root, cuda)
        source = unpacked_sdist(work, version)
        flags = [*CMAKE_FLAGS, f"-DCMAKE_CUDA_ARCHITECTURES={arch}", f"-DCUDAToolkit_ROOT={top}",
                 f"-DCMAKE_CUDA_COMPILER={top / 'bin' / 'nvcc'}"]  # fmt: skip
        env_before = dict(os.environ)
        os.environ.update(
            CMAKE_ARGS=" ".join(flags),
            CMAKE_BUILD_PARALLEL_LEVEL=str(jobs),
            CMAKE_GENERATOR="Ninja",
            CUDAToolkit_ROOT=str(top),
            CUDACXX=str(top / "bin" / "nvcc"),
            PATH=f"{top / 'bin'}:{os.environ['PATH']}",
            # The tools' executables link libggml-cuda, which needs libcublas.so.13 from the PyPI
            # folder; ld finds a library's own dependencies on LD_LIBRARY_PATH (as -rpath-link).
            LD_LIBRARY_PATH=":".join(filter(None, [str(top / "lib"), os.environ.get("LD_LIBRARY_PATH")])),
        )
        print(f"building the CUDA {cuda} sm_{arch} wheel in {work} (hours on 2 cores)", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(work / "wheels"),
                  "-C", f"build-dir={work / 'build'}", str(source)],
                 "pip wheel (CUDA)", log=work / "build.log", nice=nice)  # fmt: skip
        finally:
            os.environ.clear()
            os.environ.update(env_before)
        wheels = sorted((work / "wheels").glob("llama_cpp_python-*.whl"))
        if not wheels:
            raise BuildError(f"pip wheel left no wheel in {work / 'wheels'}")
        info = {
            "llama_cpp_python": version,
            "cuda_packages": list(TOOLKIT[cuda]),
            "cmake_flags": flags,
            "build_seconds": round(time.monotonic() - started, 1),
            "jobs": jobs,
            "nice": nice,
            "wheel": wheels[0].name,
            "wheel_bytes": wheels[0].stat().st_size,
            "needed": needed(wheels[0]),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (work / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
        return wheels[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cuda_build", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="90", help="CMAKE_CUDA_ARCHITECTURES (default 90: H100, H200)")
    parser.add_argument("--cuda", default="13", choices=sorted(TOOLKIT), help="CUDA major version (default 13)")
    parser.add_argument("--cache-dir", type=Path, help=f"cache root (default {cache_root()})")
    parser.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (default 2)")
    parser.add_argument("--nice", type=int, default=15, help="niceness of the build (default 15; 0 = none)")
    args = parser.parse_args(argv)
    try:
        wheel = ensure_cuda_wheel(args.arch, args.cuda, root=args.cache_dir, jobs=args.jobs, nice=args.nice)
    except BuildError as exc:
        print(f"CUDA build failed: {exc}", file=sys.stderr)
        return 1
    print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
