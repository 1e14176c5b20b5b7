"""Memory: what the server holds beyond the mapped model, and what each session's worker costs.

Why these figures: a local server is judged by how much RAM it takes next to the model.
The GGUF is memory-mapped, so its pages appear in the server's RSS but are the page cache
of one file (shared, evictable); everything else — KV cache, llama.cpp compute buffers,
the Python heap, libraries — is "beyond the model". The KV cache and compute buffers are
anonymous memory, so they are counted beyond the model here, and the KV cache grows with
``--ctx-size`` (measured at two sizes). Each agent session owns a sandbox worker process
tree (bubblewrap wrappers plus a Python worker); its USS (pages only it holds) is the
honest extra memory per session, since the interpreter's code is shared between workers.

Everything is measured with psutil (``/proc/PID/smaps``) on real processes: the real
``codeact-server serve`` in a subprocess on a loopback port with the embedded SmolLM2, and
the sandbox API directly without the server.

    .venv/bin/python -m benchmarks.memory [--sessions 1,4,8] [--model PATH]

Writes benchmarks/results/memory.json (commit, machine, model, settings, figures).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import embedded_model_path, print_table, write_result  # noqa: E402
from benchmarks.servers import free_port  # noqa: E402
from models.store.gguf_file import read_gguf_metadata  # noqa: E402
from sandbox import SandboxPool  # noqa: E402

MB = 1024 * 1024
TOOL = {
    "name": "add",
    "signature": "add(a: int, b: int) -> int",
    "description": "a + b",
    "source": "def add(a, b):\n    return a + b\n",
}
TASK = [{"role": "user", "content": "Use Python to compute add(2, 3)."}]


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / MB, 1)


def process_memory(proc: psutil.Process, model: Path | None = None) -> dict[str, Any]:
    """RSS/USS/PSS and anonymous memory of one process; with ``model``, that file's mappings split out.

    USS and PSS are given without the model mapping: whether its pages count as private
    depends on whether any other process (a test run, another server) maps the same file.
    """
    info = proc.memory_full_info()
    maps = proc.memory_maps(grouped=False)
    row: dict[str, Any] = {"rss": info.rss, "anonymous": sum(getattr(m, "anonymous", 0) for m in maps)}
    if model is not None:
        mine = [m for m in maps if m.path == str(model.resolve())]
        row["model_mapped"] = sum(m.rss for m in mine)
        row["beyond_model"] = info.rss - row["model_mapped"]
        row["uss_beyond_model"] = info.uss - sum(m.private_clean + m.private_dirty for m in mine)
        row["pss_beyond_model"] = info.pss - sum(m.pss for m in mine)
    else:
        row.update(uss=info.uss, pss=info.pss)
    return row


def worker_tree(root: psutil.Process) -> dict[str, Any]:
    """One sandbox worker: the bwrap wrappers and the Python worker, per process and summed."""
    procs = [root, *root.children(recursive=True)]
    parts = [(p, process_memory(p)) for p in procs]
    python = [m for p, m in parts if "python" in p.name().lower()]
    wrappers = [m for p, m in parts if "python" not in p.name().lower()]
    return {
        "processes": len(procs),
        "rss_sum": sum(m["rss"] for _, m in parts),
        "uss_sum": sum(m["uss"] for _, m in parts),
        "pss_sum": sum(m["pss"] or 0 for _, m in parts),
        "python_rss": sum(m["rss"] for m in python),
        "python_uss": sum(m["uss"] for m in python),
        "wrappers_rss": sum(m["rss"] for m in wrappers),
        "wrappers_uss": sum(m["uss"] for m in wrappers),
    }


def _median_tree(trees: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-worker figures as the median over the worker trees (all MB), and their count."""
    if not trees:
        return {}
    keys = [k for k in trees[0] if k != "processes"]
    row = {k: _mb(sorted(t[k] for t in trees)[len(trees) // 2]) for k in keys}
    return {**row, "processes": trees[0]["processes"], "n": len(trees)}


class ServedModel:
    """The real ``python -m server.cli.main serve`` in a subprocess, up until ``close``."""

    def __init__(self, model: Path, ctx_size: int | None, pool_size: int) -> None:
        self.port = free_port()
        argv = [
            sys.executable,
            "-m",
            "server.cli.main",
            "serve",
            "--model",
            str(model),
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--sandbox-pool-size",
            str(pool_size),
        ]
        if ctx_size:
            argv += ["--ctx-size", str(ctx_size)]
        self.pool_size = pool_size
        self.popen = subprocess.Popen(argv, cwd=Path(__file__).resolve().parent.parent)
        self.proc = psutil.Process(self.popen.pid)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=300)
        deadline = time.monotonic() + 120
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"server exited with {self.popen.returncode} during start-up")
            try:
                health = self.http.get("/health")
                if health.status_code == 200:
                    self.ctx = int(health.json()["context_length"])
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("server did not answer /health within 120 s")
            time.sleep(0.2)

    def settle(self, sessions: int) -> list[psutil.Process]:
        """Wait until the worker trees are those of the live sessions plus a refilled pool."""
        deadline = time.monotonic() + 30
        while True:
            children = self.proc.children()
            if len(children) == sessions + self.pool_size or time.monotonic() > deadline:
                time.sleep(1.0)  # let freed memory and the refill's start-up finish
                return self.proc.children()
            time.sleep(0.1)

    def agent(self, text: str | None = None, session: str | None = None) -> str:
        """One agent request: a new session that defines a tool, or ``text`` continuing ``session``."""
        messages = [{"role": "user", "content": text}] if text else TASK
        body: dict[str, Any] = {"model": "default", "messages": messages, "max_turns": 1, "max_tokens": 48}
        body.update({"session_id": session} if session else {"tools": [TOOL]})
        answer = self.http.post("/v1/agent", json=body)
        answer.raise_for_status()
        return str(answer.json()["agent"]["session_id"])

    def chat(self) -> None:
        body = {"model": "default", "messages": TASK, "max_tokens": 48}
        self.http.post("/v1/chat/completions", json=body).raise_for_status()

    def close(self) -> None:
        self.http.close()
        self.popen.terminate()
        try:
            self.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def measure_server(
    model: Path, ctx_size: int | None, counts: list[int], pool_size: int, interleaved: int = 0
) -> tuple[list, list]:
    """Server rows per phase (two cycles of sessions, to tell a leak from warm-up), and worker trees."""
    server = ServedModel(model, ctx_size, pool_size)
    rows: list[dict[str, Any]] = []
    trees: list[dict[str, Any]] = []
    label = f"ctx {server.ctx}" + ("" if ctx_size else " (default)")

    def snap(phase: str, sessions: int) -> list[psutil.Process]:
        children = server.settle(sessions)
        mem = process_memory(server.proc, model)
        row = {"server": label, "phase": phase, "sessions": sessions, "worker_trees": len(children)}
        row.update({k: _mb(v) for k, v in mem.items()})
        row["workers_uss_sum"] = _mb(sum(worker_tree(c)["uss_sum"] for c in children))
        rows.append(row)
        return sorted(children, key=lambda c: c.create_time())

    def delete(ids: list[str]) -> None:
        for sid in ids:
            server.http.delete(f"/v1/agent/sessions/{sid}").raise_for_status()

    try:
        snap("idle after start", 0)
        if not counts:
            return rows, trees
        server.chat()
        snap("after 1 chat completion", 0)
        for cycle, targets in ((1, counts), (2, counts[-1:])):
            sessions: list[str] = []
            for target in targets:
                while len(sessions) < target:
                    sessions.append(server.agent())
                children = snap(f"cycle {cycle}: {target} agent sessions", target)
            if cycle == 1:  # the pool's refills are the newest children; the rest serve sessions
                split = len(children) - server.pool_size
                trees.append(
                    {
                        "source": "server",
                        "state": "session worker after 1 agent request",
                        **_median_tree([worker_tree(c) for c in children[:split]]),
                    }
                )
                trees.append(
                    {
                        "source": "server",
                        "state": "pooled worker, never used",
                        **_median_tree([worker_tree(c) for c in children[split:]]),
                    }
                )
            delete(sessions)
            snap(f"cycle {cycle}: sessions deleted", 0)
        # Cycle 3: distinct conversations, two turns each, interleaved, so the engine's
        # per-conversation KV snapshots (saved when another conversation takes the context) fill.
        if not interleaved:
            return rows, trees
        texts = [_distinct_text(i) for i in range(interleaved)]
        sessions = [server.agent(text) for text in texts]
        for sid in sessions:
            server.agent("Now print the sum of those numbers.", sid)
        snap(f"cycle 3: {len(sessions)} distinct sessions x 2 turns, interleaved", len(sessions))
        delete(sessions)
        snap("cycle 3: sessions deleted", 0)
    finally:
        server.close()
    return rows, trees


def measure_sandbox_api(level: str, pool_size: int = 2) -> list[dict[str, Any]]:
    """Worker trees straight from the sandbox API: pooled, configured and warm, after numpy."""
    rows: list[dict[str, Any]] = []
    source = f"sandbox API ({level})"
    me = psutil.Process()
    with SandboxPool(size=pool_size, isolation_level=level) as pool:  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        while pool.idle < pool_size and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        pooled = [worker_tree(c) for c in me.children()]
        rows.append({"source": source, "state": "pooled worker, never used", **_median_tree(pooled)})
        sandbox = pool.acquire()
        try:
            assert sandbox.run("x = 1 + 1").ok
            root = _tree_root(me, sandbox.pid)
            rows.append({"source": source, "state": "warm after `x = 1 + 1`", **_median_tree([worker_tree(root)])})
            result = sandbox.run("import numpy as np\na = np.arange(10)")
            if result.ok:
                rows.append({"source": source, "state": "after `import numpy`", **_median_tree([worker_tree(root)])})
        finally:
            sandbox.close()
    return rows


def _distinct_text(index: int) -> str:
    """A user message of ~700 tokens that shares little with any other session's."""
    numbers = ", ".join(str((index + 1) * 7919 * k % 100003) for k in range(1, 200))
    return f"Session {index}. Here are numbers: {numbers}. Use Python to find the largest."


def _tree_root(parent: psutil.Process, pid: int | None) -> psutil.Process:
    """The direct child of ``parent`` whose tree holds the worker ``pid``."""
    for child in parent.children():
        if child.pid == pid or any(g.pid == pid for g in child.children(recursive=True)):
            return child
    raise RuntimeError(f"worker {pid} is not a descendant of {parent.pid}")


def imports_baseline() -> dict[str, Any]:
    """A Python that imported what the server imports, with no model: the runtime's own share."""
    code = (
        "import server.api.app, server.cli.main, models.engine.llama.engine, sandbox.pool; "
        "print('ready', flush=True); input()"
    )
    popen = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
        text=True,
    )
    try:
        assert popen.stdout and popen.stdout.readline().strip() == "ready"
        mem = process_memory(psutil.Process(popen.pid))
        mem.update(uss_beyond_model=mem.pop("uss"), pss_beyond_model=mem.pop("pss"))
        return {"server": "no model", "phase": "python + server imports only", **{k: _mb(v) for k, v in mem.items()}}
    finally:
        popen.kill()
        popen.wait()


def kv_cache_bytes(model: Path, ctx: int) -> int:
    """f16 K and V for every layer and context cell: what llama.cpp allocates for the KV cache."""
    meta = read_gguf_metadata(model)
    arch = meta["general.architecture"]
    heads = meta[f"{arch}.attention.head_count"]
    head_dim = meta[f"{arch}.embedding_length"] // heads
    kv_heads = meta.get(f"{arch}.attention.head_count_kv", heads)
    return meta[f"{arch}.block_count"] * ctx * kv_heads * head_dim * 2 * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="GGUF to serve (default: the embedded SmolLM2)")
    parser.add_argument("--sessions", default="1,4,8", help="agent session counts, cumulative")
    parser.add_argument("--small-ctx", type=int, default=2048, help="second, idle-only server with this context")
    parser.add_argument("--interleaved", type=int, default=8, help="distinct 2-turn sessions in cycle 3 (0: skip)")
    parser.add_argument("--pool-size", type=int, default=2, help="--sandbox-pool-size of the server")
    args = parser.parse_args()
    model: Path = (args.model or embedded_model_path()).resolve()
    counts = [int(n) for n in args.sessions.split(",") if n]

    # A SIGTERM (e.g. from `timeout`) unwinds through the `finally` that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server_rows, trees = measure_server(model, None, counts, args.pool_size, args.interleaved)
    small_rows, _ = measure_server(model, args.small_ctx, [], args.pool_size)
    server_rows += [*small_rows, imports_baseline()]
    for level in ("namespaces", "rlimits"):
        trees += measure_sandbox_api(level)

    size = model.stat().st_size
    for row in server_rows:
        if "beyond_model" in row:
            row["beyond/model_file"] = round(row["beyond_model"] * MB / size, 2)
    contexts = sorted({int(row["server"].split()[1]) for row in server_rows if row["server"].startswith("ctx")})
    kv = {str(ctx): _mb(kv_cache_bytes(model, ctx)) for ctx in contexts}
    print(f"model file: {model.name}, {size / MB:.1f} MB; f16 KV cache by context: {kv} MB")
    print_table(
        server_rows,
        [
            "server",
            "phase",
            "worker_trees",
            "rss",
            "model_mapped",
            "beyond_model",
            "anonymous",
            "uss_beyond_model",
            "pss_beyond_model",
            "beyond/model_file",
            "workers_uss_sum",
        ],
        title="Server process (MB); workers_uss_sum = all sandbox worker trees, outside the server",
    )
    print_table(
        trees,
        [
            "source",
            "state",
            "n",
            "processes",
            "rss_sum",
            "uss_sum",
            "pss_sum",
            "python_rss",
            "python_uss",
            "wrappers_rss",
            "wrappers_uss",
        ],
        title="One sandbox worker tree (MB; median over n trees)",
    )
    target = write_result(
        "memory",
        {
            "settings": {
                "sessions": counts,
                "pool_size": args.pool_size,
                "small_ctx": args.small_ctx,
                "interleaved": args.interleaved,
                "agent_request": {"messages": TASK, "tools": [TOOL], "max_turns": 1, "max_tokens": 48},
            },
            "units": "MiB",
            "model_file_mb": _mb(size),
            "kv_cache_f16_mb": kv,
            "server": server_rows,
            "worker_trees": trees,
        },
        model=model,
    )
    print(f"\nwrote {target}")


if __name__ == "__main__":
    main()
