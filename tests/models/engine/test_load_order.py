"""libllama is the first library in a serving process to need the C++ runtime.

A CUDA build of llama.cpp segfaulted at model load when numpy (or any other extension that
links libstdc++) had been imported first (``models.engine.llama.library`` says why). The CPU
build does not crash in that order, so these tests read the dynamic loader's own record
(``LD_DEBUG=files``) of a fresh ``codeact-server serve`` instead of waiting for a crash: the
object that first needs ``libstdc++.so`` must be libllama or one of its ggml libraries.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.servers import free_port, stop_process
from tests.conftest import embedded_model_path

REPO = Path(__file__).resolve().parents[3]
CXX_RUNTIME = "libstdc++.so"
# A line of LD_DEBUG=files: "  1234:\tfile=libstdc++.so.6 [0];  needed by /x/_multiarray_umath.so [0]"
_FIRST_NEED = re.compile(r"file=(?P<file>\S+) \[\d+\];\s+(?:needed|dynamically loaded) by (?P<by>\S+)")


def first_to_load(loader_log: str, library: str) -> str | None:
    """The object whose dependency (or dlopen) first brought ``library`` into the process."""
    for match in _FIRST_NEED.finditer(loader_log):
        if library in Path(match["file"]).name:
            return match["by"]
    return None


def is_llama_library(path: str) -> bool:
    return Path(path).name.startswith(("libllama", "libggml", "libmtmd"))


def test_first_to_load_names_the_extension_that_brought_the_runtime_in() -> None:
    numpy_first = (
        "  7:\tfile=/v/numpy/_core/_multiarray_umath.so [0];  dynamically loaded by /py/_ctypes.so [0]\n"
        "  7:\tfile=libstdc++.so.6 [0];  needed by /v/numpy/_core/_multiarray_umath.so [0]\n"
        "  7:\tfile=/v/llama_cpp/lib/libllama.so [0];  dynamically loaded by /py/_ctypes.so [0]\n"
    )
    llama_first = (
        "  7:\tfile=/v/llama_cpp/lib/libllama.so [0];  dynamically loaded by /py/_ctypes.so [0]\n"
        "  7:\tfile=libggml-base.so.0 [0];  needed by /v/llama_cpp/lib/libllama.so [0]\n"
        "  7:\tfile=libstdc++.so.6 [0];  needed by /v/llama_cpp/lib/libggml-base.so.0 [0]\n"
    )
    assert first_to_load(numpy_first, CXX_RUNTIME) == "/v/numpy/_core/_multiarray_umath.so"
    assert not is_llama_library("/v/numpy/_core/_multiarray_umath.so")
    assert first_to_load(llama_first, CXX_RUNTIME) == "/v/llama_cpp/lib/libggml-base.so.0"
    assert is_llama_library("/v/llama_cpp/lib/libggml-base.so.0")
    assert first_to_load("", CXX_RUNTIME) is None


def _loader_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "LD_DEBUG": "files", "LD_DEBUG_OUTPUT": str(tmp_path / "ld"), "PYTHONPATH": str(REPO)}


def _run_python(tmp_path: Path, code: str) -> tuple[str, str]:
    """Run ``code`` in a fresh interpreter under LD_DEBUG=files: (the loader's record, stderr)."""
    env = _loader_env(tmp_path)
    process = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    return "".join(p.read_text() for p in tmp_path.glob("ld.*")), process.stderr


def test_numpy_first_is_caught_and_warned_about(tmp_path: Path) -> None:
    """The check can fail: numpy imported before libllama is the first to need libstdc++,
    and ``load_first`` says so when it finds the runtime already mapped."""
    code = (
        "import logging, numpy; logging.basicConfig();from models.engine.llama.library import load_first; load_first()"
    )
    log, stderr = _run_python(tmp_path, code)
    first = first_to_load(log, CXX_RUNTIME)
    assert first is not None and "numpy" in first
    assert "libstdc++ was loaded before libllama" in stderr


def test_load_first_then_numpy_keeps_libllama_first(tmp_path: Path) -> None:
    log, _ = _run_python(tmp_path, "from models.engine.llama.library import load_first; load_first(); import numpy")
    first = first_to_load(log, CXX_RUNTIME)
    assert first is not None and is_llama_library(first), first


def _console_script() -> list[str]:
    """``codeact-server`` as installed next to this interpreter (what users run)."""
    script = Path(sys.executable).with_name("codeact-server")
    return [str(script)] if script.exists() else [sys.executable, "-m", "server.cli.main"]


@pytest.mark.model
def test_a_fresh_serve_loads_libllama_before_any_cxx_extension(tmp_path: Path) -> None:
    """The whole ``serve`` path as users start it, until the model is loaded and answering."""
    port = free_port()
    command = [
        *_console_script(), "serve", "--model", str(embedded_model_path()), "--port", str(port),
        "--sandbox-pool-size", "0", "--ctx-size", "512", "--log-level", "warning",
    ]  # fmt: skip
    env = _loader_env(tmp_path)
    server_log = tmp_path / "serve.log"
    with server_log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, server_log.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /health in 120 s"
            time.sleep(0.25)
    finally:
        stop_process(process, grace_s=20)
    log = (tmp_path / f"ld.{process.pid}").read_text()
    assert re.search(r"file=\S*libllama\.so", log), "the serving process never loaded libllama"
    first = first_to_load(log, CXX_RUNTIME)
    assert first is not None, "the serving process never loaded libstdc++"
    assert is_llama_library(first), f"{first} loaded the C++ runtime before libllama did"
    assert "libstdc++ was loaded before libllama" not in server_log.read_text()
