"""Sandbox latency: warm round trip and a new session's first result, against baselines.

The warm round trip is measured twice: as the server runs it, and with
``keep_processes`` (the end of each cell does not look for processes it left running), so
what that look costs is a ratio from the same run.

Why these baselines in the same run: the machines are shared, so only ratios measured
together mean anything. A Jupyter kernel is what the reference CodeAct stack executes
in; a fresh `python -c` (plain and inside bubblewrap) is the naive "process per call";
in-process `exec` is the floor with no isolation at all.

A new session's first plot: `import matplotlib.pyplot`, and a whole first plot saved, from a
pooled worker that pre-imported nothing against one that pre-imported the server's default
`sandbox_preimport` (numpy, pandas, matplotlib.pyplot), in the same run.

Sandbox workers run in the sandbox environment's interpreter, as the server's do
(`codeact-server sandbox setup` makes it; `--python` picks another).

    .venv/bin/python -m benchmarks.sandbox_latency [--rounds 300] [--sessions 20] [--plot-sessions 10]

Writes benchmarks/results/sandbox_latency.json (commit, machine, settings, figures).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, write_result  # noqa: E402
from sandbox import Sandbox, SandboxPool, environment  # noqa: E402
from sandbox.confine import isolation  # noqa: E402
from sandbox.workspace import SessionDirs  # noqa: E402

TRIVIAL = "x = 1 + 1"
IMPORT_PYPLOT = "import matplotlib.pyplot as plt"
FIRST_PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.savefig('first.png')"
#: The interpreter sandbox workers run in (set from --python in main).
PYTHON: str | None = None


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
        "n": len(ordered),
    }


def _time(fn: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def warm_round_trip(rounds: int, level: isolation.Requested, keep_processes: bool = False) -> tuple[str, list[float]]:
    with Sandbox(isolation_level=level, python=PYTHON, keep_processes=keep_processes) as sb:
        for _ in range(20):
            sb.run(TRIVIAL)
        return sb.isolation, _time(lambda: sb.run(TRIVIAL), rounds)


def pool_first_result(
    sessions: int,
    level: isolation.Requested,
    code: str = TRIVIAL,
    preimport: tuple[str, ...] = (),
    python: str | None = None,
) -> list[float]:
    """acquire -> first result of `code`, each session from a full pool (refills not timed)."""
    samples = []
    with SandboxPool(size=2, isolation_level=level, python=python or PYTHON, preimport=preimport) as pool:
        for _ in range(sessions):
            deadline = time.monotonic() + 120
            while pool.idle < pool.size and time.monotonic() < deadline:
                time.sleep(0.01)
            started = time.perf_counter()
            sb = pool.acquire()
            result = sb.run(code)
            samples.append(time.perf_counter() - started)
            assert result.ok, result
            sb.close()
    return samples


def cold_first_result(sessions: int, level: isolation.Requested) -> list[float]:
    def once() -> None:
        with Sandbox(isolation_level=level, python=PYTHON) as sb:
            sb.run(TRIVIAL)

    return _time(once, sessions)


def python_c(sessions: int, in_bwrap: bool) -> list[float] | None:
    prefix: list[str] = []
    if in_bwrap:
        if isolation.detect("auto") != "namespaces":
            return None
        dirs = SessionDirs.create(None, None)
        try:
            plan = isolation.plan("namespaces", dirs.workspace, dirs.tmp, False, None, python=PYTHON)
            prefix = plan.argv[: plan.argv.index("--") + 1]
            return _time(lambda: subprocess.run([*prefix, PYTHON, "-c", TRIVIAL], check=True), sessions)
        finally:
            dirs.remove()
    return _time(lambda: subprocess.run([sys.executable, "-c", TRIVIAL], check=True), sessions)


def in_process(rounds: int) -> list[float]:
    namespace: dict[str, Any] = {}

    def once() -> None:
        exec(compile(TRIVIAL, "<cell>", "exec"), namespace)

    return _time(once, rounds)


def jupyter(rounds: int, sessions: int) -> dict[str, Any] | None:
    if not (importlib.util.find_spec("jupyter_client") and importlib.util.find_spec("ipykernel")):
        return None
    from jupyter_client.manager import start_new_kernel

    starts: list[float] = []
    warm: list[float] = []
    for index in range(max(2, sessions // 5)):
        started = time.perf_counter()
        manager, client = start_new_kernel(kernel_name="python3")
        try:
            client.execute_interactive(TRIVIAL, timeout=30)
            starts.append(time.perf_counter() - started)
            if index == 0:
                warm = _time(lambda c=client: c.execute_interactive(TRIVIAL, timeout=30), rounds)
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
    return {"first": starts, "warm": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300, help="warm round trips per measurement")
    parser.add_argument("--sessions", type=int, default=20, help="new sessions per measurement")
    parser.add_argument("--plot-sessions", type=int, default=10, help="new sessions per first-plot measurement")
    parser.add_argument("--python", help="sandbox interpreter (default: the sandbox environment's)")
    args = parser.parse_args()
    global PYTHON
    PYTHON = args.python or str(environment.resolve(None, environment.default_env_dir())[0])

    rows: list[dict[str, Any]] = []

    def add(name: str, what: str, samples: list[float] | None, note: str = "") -> None:
        row: dict[str, Any] = {"executor": name, "measure": what, "note": note}
        row.update(_stats(samples) if samples else {"median_ms": None, "p90_ms": None, "n": 0})
        rows.append(row)

    level, warm = warm_round_trip(args.rounds, "auto")
    add(f"sandbox ({level})", "warm round trip", warm)
    _, kept = warm_round_trip(args.rounds, "auto", keep_processes=True)
    add(f"sandbox ({level})", "warm round trip, leftover processes not looked for", kept, "--sandbox-keep-processes")
    add(f"sandbox ({level})", "pool: acquire -> first result", pool_first_result(args.sessions, "auto"))
    cold = cold_first_result(max(5, args.sessions // 2), "auto")
    add(f"sandbox ({level})", "no pool: Sandbox() -> first result", cold)
    preimport = environment.DEFAULT_PREIMPORT
    for what, code in (("`import matplotlib.pyplot`", IMPORT_PYPLOT), ("first plot saved", FIRST_PLOT)):
        if importlib.util.find_spec("matplotlib"):  # the server's venv has it with the dev extras
            add(
                f"sandbox ({level})",
                f"server's interpreter, no pre-import: acquire -> {what}",
                pool_first_result(args.plot_sessions, "auto", code, python=sys.executable),
                "as before issue 14",
            )
        add(
            f"sandbox ({level})",
            f"pool, no pre-import: acquire -> {what}",
            pool_first_result(args.plot_sessions, "auto", code),
        )
        add(
            f"sandbox ({level})",
            f"pool, pre-imported: acquire -> {what}",
            pool_first_result(args.plot_sessions, "auto", code, preimport),
            ", ".join(preimport),
        )
    fallback, warm_fallback = warm_round_trip(args.rounds, "rlimits")
    add(f"sandbox ({fallback})", "warm round trip", warm_fallback)
    add(f"sandbox ({fallback})", "pool: acquire -> first result", pool_first_result(args.sessions, "rlimits"))
    found = jupyter(args.rounds, args.sessions)
    if found is None:
        add("jupyter kernel", "start -> first result", None, "not installed")
        add("jupyter kernel", "warm round trip", None, "not installed")
    else:
        add("jupyter kernel", "start -> first result", found["first"])
        add("jupyter kernel", "warm round trip", found["warm"])
    add("python -c", "fresh process", python_c(args.sessions, in_bwrap=False))
    inside = python_c(args.sessions, in_bwrap=True)
    add("python -c in bwrap", "fresh process", inside, "" if inside else "bubblewrap not usable")
    add("in-process exec", "round trip", in_process(args.rounds * 10))

    columns = ["executor", "measure", "median_ms", "p90_ms", "n", "note"]
    print_table(rows, columns, title="Sandbox latency (ms)")
    target = write_result(
        "sandbox_latency",
        {
            "settings": {
                "rounds": args.rounds,
                "sessions": args.sessions,
                "code": TRIVIAL,
                "isolation": level,
                "fallback_isolation": fallback,
                "python": PYTHON,
                "plot_sessions": args.plot_sessions,
                "plot_code": FIRST_PLOT,
                "preimport": preimport,
            },
            "targets_ms": {"warm_round_trip_median": 1.0, "pool_first_result_median": 30.0},
            "rows": rows,
        },
    )
    print(f"\nwrote {target}")


if __name__ == "__main__":
    main()
