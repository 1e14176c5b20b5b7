"""What the software-GPU tier's tests share: where the Vulkan build is, and ``serve`` started on it.

``serve`` is started as a user starts it, from this clone's console script, with
``--llama-lib`` pointing at the Vulkan build's ``llama_cpp/lib`` (the same llama-cpp-python
version, so the same bindings). ``GGML_VK_VISIBLE_DEVICES=0`` makes lavapipe the device:
ggml-vulkan skips CPU-type Vulkan devices unless they are named, and lavapipe is one, which
also gives the tier a GPU build with no usable device, for the CPU fallback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.servers import free_port
from benchmarks.vulkan_build import BuildError, cache_root, library_dir, pinned_version
from models.store.local import embedded_model_path
from tests.live_server import wait_until_healthy

ENABLE = "CODEACT_TEST_GPU_SOFT"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class SoftGpuServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    loader_log_dir: Path
    llama_lib: Path


def vulkan_library() -> Path:
    """The cached Vulkan build's library folder; skip (or, when the tier is asked for, fail) without it."""
    venv = cache_root() / pinned_version() / "venv"
    try:
        if not (venv.parent / "build-info.json").exists():
            raise BuildError(f"no Vulkan build in {venv.parent}")
        return library_dir(venv)
    except BuildError as exc:
        if os.environ.get(ENABLE) == "1":
            pytest.fail(f"{ENABLE}=1 but {exc}: run `python -m benchmarks.vulkan_build` (make test-gpu-soft does)")
        pytest.skip(f"software-GPU tier: run `make test-gpu-soft` ({exc})")


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("codeact-server")
    return [str(script)] if script.exists() else [sys.executable, "-m", "server.cli.main"]


@contextmanager
def started_serve(tmp: Path, *, lavapipe: bool, args: tuple[str, ...] = ()) -> Iterator[SoftGpuServer]:
    """``serve`` on the embedded model with the Vulkan build, until the ``with`` ends (then SIGKILL if alive).

    ``lavapipe``: make lavapipe visible to ggml-vulkan (else the build finds no device).
    The loader's record (``LD_DEBUG=files``) goes to ``tmp/ld.<pid>``.
    """
    llama_lib = vulkan_library()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEACT_", "GGML_VK_"))}
    env.update(CODEACT_STORE="none", LD_DEBUG="files", LD_DEBUG_OUTPUT=str(tmp / "ld"), PYTHONFAULTHANDLER="1")
    if lavapipe:
        env["GGML_VK_VISIBLE_DEVICES"] = "0"
    command = [
        *console_script(), "serve", "--model", str(embedded_model_path()), "--port", str(port),
        "--llama-lib", str(llama_lib), "--ctx-size", "2048", "--log-level", "info", *args,
    ]  # fmt: skip
    log = tmp / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(process, f"http://127.0.0.1:{port}", log, timeout_s=240)  # lavapipe compiles pipelines
        yield SoftGpuServer(f"http://127.0.0.1:{port}", process, log, tmp, llama_lib)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
