"""GPU and host memory of a server process, as ``nvidia-smi`` and ``/proc`` report them.

``snapshot(pid)`` answers the card's used/total MiB, the MiB the card attributes to that
process (``--query-compute-apps``; a container may hide pids, then it is None), and the
process's resident set. Without ``nvidia-smi`` (the CPU dry run) the GPU fields are None and
``gpu`` says why, so a missing figure is never mistaken for zero.

Run: ``python -m benchmarks.gpu.memory_probe --pid PID [--label TEXT] [--out FILE.json]``
(``--out`` appends one JSON line per call).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _smi(*query: str) -> list[list[str]]:
    done = subprocess.run(
        ["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        raise RuntimeError(f"nvidia-smi {' '.join(query)} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return [[cell.strip() for cell in line.split(",")] for line in done.stdout.splitlines() if line.strip()]


def rss_mib(pid: int) -> float | None:
    """Resident set of ``pid`` in MiB (None when it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def gpu_snapshot(pid: int | None) -> dict[str, Any]:
    """The first card's memory and the part of it ``pid`` holds (MiB)."""
    if shutil.which("nvidia-smi") is None:
        return {"gpu": "nvidia-smi not found (no NVIDIA driver here)", "used_mib": None, "total_mib": None}
    try:
        used, total = (float(x) for x in _smi("--query-gpu=memory.used,memory.total")[0][:2])
        process_mib = None
        if pid is not None:
            for row in _smi("--query-compute-apps=pid,used_memory"):
                if row and row[0] == str(pid):
                    process_mib = float(row[1])
        return {"gpu": "nvidia-smi", "used_mib": used, "total_mib": total, "process_mib": process_mib}
    except (RuntimeError, OSError, ValueError, IndexError, subprocess.SubprocessError) as exc:
        return {"gpu": f"nvidia-smi failed: {exc}", "used_mib": None, "total_mib": None}


def snapshot(pid: int | None, label: str = "") -> dict[str, Any]:
    """GPU memory plus the process's RSS, stamped with the time and ``label``."""
    return {
        "label": label,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "pid": pid,
        "rss_mib": rss_mib(pid) if pid is not None else None,
        **gpu_snapshot(pid),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.memory_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--pid", type=int)
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, help="append the snapshot as one JSON line")
    args = parser.parse_args(argv)
    record = snapshot(args.pid, args.label)
    line = json.dumps(record)
    if args.out:
        with args.out.open("a") as handle:
            handle.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
