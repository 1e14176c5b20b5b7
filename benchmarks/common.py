"""What every benchmark shares: provenance of a result, the result file, the printed table.

A figure without the commit, machine, model and llama.cpp build it came from cannot be
compared with anything, so every script writes them next to its numbers
(``benchmarks/results/<name>.json``). Speeds are only compared as ratios measured in one
run: the machines here are shared, and absolute tok/s drift with everyone else's load.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from models.errors import ModelNotFoundError
from models.store import local as store

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def embedded_model_path() -> Path:
    """The default model of every benchmark (``models.store.local.embedded_model_path``);
    without it the script stops with the fix rather than a traceback."""
    try:
        return store.embedded_model_path()
    except ModelNotFoundError as exc:
        raise SystemExit(f"{exc}, or pass --model PATH") from exc


def git_commit() -> dict[str, Any]:
    """HEAD and whether the tree had uncommitted changes (a dirty figure is still a figure)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory and the load at start: the load explains most run-to-run drift here."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu,
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_info(path: Path, *, synthetic: bool = False) -> dict[str, Any]:
    """Which weights: path, size and sha256 (so a figure names the exact file)."""
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "synthetic_random_weights": synthetic,
    }


def llama_build_info() -> dict[str, Any]:
    """llama-cpp-python version and the backend/CPU features of the loaded llama.cpp build."""
    import llama_cpp

    from models.engine.llama.engine import gpu_backend

    return {
        "llama_cpp_python": llama_cpp.__version__,
        "backend": gpu_backend() or "cpu",
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    }


def write_result(name: str, payload: Mapping[str, Any], *, model: Path | None = None, synthetic: bool = False) -> Path:
    """Write ``benchmarks/results/<name>.json`` with provenance around ``payload``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git": git_commit(),
        "machine": machine_info(),
        "build": llama_build_info(),
        "model": model_info(model, synthetic=synthetic) if model else None,
        **payload,
    }
    target = RESULTS_DIR / f"{name}.json"
    target.write_text(json.dumps(document, indent=2) + "\n")
    return target


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, title: str = "") -> None:
    """A fixed-width table on stdout (floats to 3 significant places), for the terminal and RESULTS.md."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return "" if value is None else str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    if title:
        print(f"\n{title}")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |")


def median(values: Iterable[float]) -> float:
    data = [v for v in values if v == v]  # drop NaN
    return statistics.median(data) if data else float("nan")
