"""Inference servers as child processes, for benchmarks that compare them over HTTP.

Each server a benchmark compares runs the way its users run it: its own process, its own
port, its own event loop or C++ threads. Running ours inside the benchmark's process (as
``server.api.loopback.LoopbackServer`` does) would make the client's JSON parsing compete
with our server for one GIL, a cost no deployed server pays and no out-of-process peer pays
either. Every server here is started on a free loopback port, polled until it answers, and
stopped (terminate, then kill) when the ``with`` block ends; its output goes to a log file
whose tail is quoted if it fails to start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from benchmarks.common import REPO

START_TIMEOUT_S = 180.0


def free_port() -> int:
    """A loopback port free right now, for a child server to bind (the one copy: tests use it too)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``; always reaped."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def child_server(name: str, command: Sequence[str], port: int, ready_path: str) -> Iterator[str]:
    """Run ``command`` until the ``with`` ends; yields its base URL once ``ready_path`` answers 200."""
    log = Path(tempfile.mkstemp(prefix=f"bench-{name.replace(' ', '-')}-", suffix=".log")[1])
    with log.open("w") as out:
        process = subprocess.Popen(
            list(command), stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(base + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start in {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-2000:]}")
            time.sleep(0.25)
        yield base
    finally:
        stop_process(process, grace_s=20)
        log.unlink(missing_ok=True)


@contextmanager
def ours_server(model: Path, *, threads: int, ctx: int, parallel: int, extra: Sequence[str] = ()) -> Iterator[str]:
    """``codeact-server serve`` on the model, no sandbox pool (chat completions need none)."""
    port = free_port()
    command = [
        sys.executable, "-m", "server.cli.main", "serve", "--model", str(model), "--threads", str(threads),
        "--ctx-size", str(ctx), "--parallel", str(parallel), "--port", str(port), "--sandbox-pool-size", "0",
        "--log-level", "warning", *extra,
    ]  # fmt: skip
    with _in_repo(), child_server("codeact-server", command, port, "/health") as base:
        yield base


@contextmanager
def upstream_server(
    binary: Path, model: Path, *, threads: int, ctx: int, parallel: int, alias: str, flash_attn: str = "auto"
) -> Iterator[str]:
    """Upstream ``llama-server``: ``parallel`` slots sharing one unified KV cache of ``ctx`` cells.

    Its defaults otherwise (prompt cache, continuous batching, flash attention ``auto``):
    the server as people run it. ``--kv-unified`` matches our engine, whose sequences share
    the context's cells, so neither side caps a slot at ``ctx / parallel``.
    """
    port = free_port()
    command = [
        str(binary), "--model", str(model), "--alias", alias, "--host", "127.0.0.1", "--port", str(port),
        "--ctx-size", str(ctx), "--parallel", str(parallel), "--kv-unified", "--threads", str(threads),
        "--threads-batch", str(threads), "--n-gpu-layers", "0", "--flash-attn", flash_attn, "--no-webui",
    ]  # fmt: skip
    with child_server("llama-server", command, port, "/health") as base:
        yield base


@contextmanager
def peer_server(model: Path, *, threads: int, ctx: int, alias: str) -> Iterator[str]:
    """llama-cpp-python's own server; needs its ``server`` extra (``starlette-context``)."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias,
        "--n_ctx", str(ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads),
        "--n_gpu_layers", "0", "--chat_format", "chatml", "--port", str(port), "--verbose", "False",
    ]  # fmt: skip
    with child_server("llama_cpp.server", command, port, "/v1/models") as base:
        yield base


@contextmanager
def _in_repo() -> Iterator[None]:
    """``python -m server.cli.main`` must import this checkout's packages, whatever the cwd."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), previous) if p)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous
