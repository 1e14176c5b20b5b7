"""Summarising task runs: the numbers, the table, and the JSON files on disk.

Per DESIGN.md a benchmark prints a table and writes JSON carrying the commit, the machine,
the model and the settings, so that a figure in ``benchmarks/RESULTS.md`` can be traced to
the run that produced it.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .harness import TaskRun

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "m3tooleval"


def _rate(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _group(runs: Sequence[TaskRun]) -> dict[str, Any]:
    turns = sum(run.turns for run in runs)
    return {
        "tasks": len(runs),
        "success_reference": sum(run.reference for run in runs),
        "success_lenient": sum(run.lenient for run in runs),
        "rate_reference": _rate(sum(run.reference for run in runs), len(runs)),
        "rate_lenient": _rate(sum(run.lenient for run in runs), len(runs)),
        "avg_turns": _rate(turns, len(runs)),
        "malformed_turns": sum(run.malformed_turns for run in runs),
        "malformed_turn_rate": _rate(sum(run.malformed_turns for run in runs), turns),
        "no_solution": sum(run.finish_reason != "solution" for run in runs),
        "errors": sum(run.error is not None for run in runs),
    }


def summarize(runs: Sequence[TaskRun], wall_s: float) -> dict[str, Any]:
    """Overall and per-domain figures; tok/s is completion tokens over request wall time."""
    domains: dict[str, list[TaskRun]] = {}
    for run in runs:
        domains.setdefault(run.domain, []).append(run)
    request_wall = sum(run.wall_s for run in runs)
    completion = sum(run.completion_tokens for run in runs)
    return {
        **_group(runs),
        "completion_tokens": completion,
        "prompt_tokens": sum(run.prompt_tokens for run in runs),
        "tokens_per_s": _rate(completion, request_wall),
        "request_wall_s": request_wall,
        "wall_s": wall_s,
        "per_domain": {name: _group(group) for name, group in domains.items()},
        "finish_reasons": _count(run.finish_reason or "error" for run in runs),
    }


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def render_table(summary: dict[str, Any]) -> str:
    """A plain-text table: one row per domain, then the total and the run figures."""
    header = f"{'domain':<38} {'tasks':>5} {'ref':>9} {'lenient':>9} {'turns':>6} {'malformed':>9}"
    rows = [header, "-" * len(header)]

    def row(name: str, group: dict[str, Any]) -> str:
        return (
            f"{name:<38} {group['tasks']:>5} "
            f"{group['success_reference']:>3} {group['rate_reference']:>5.1%} "
            f"{group['success_lenient']:>3} {group['rate_lenient']:>5.1%} "
            f"{group['avg_turns']:>6.2f} {group['malformed_turn_rate']:>9.1%}"
        )

    rows += [row(name, group) for name, group in summary["per_domain"].items()]
    rows += ["-" * len(header), row("total", summary)]
    rows.append(
        f"tokens/s {summary['tokens_per_s']:.1f} ({summary['completion_tokens']} completion "
        f"tokens), wall {summary['wall_s']:.1f} s, finish reasons {summary['finish_reasons']}"
    )
    return "\n".join(rows)


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def run_metadata(settings: dict[str, Any]) -> dict[str, Any]:
    """Commit, machine and settings for the summary file."""
    return {
        "commit": _commit(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": settings,
    }


def write_results(out_dir: Path, runs: Sequence[TaskRun], summary: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``<out>/<run id>/tasks/*.json`` and ``summary.json``; return the run folder."""
    model = str(meta["settings"].get("model", "model")).replace("/", "_")
    run_dir = out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{model}"
    (run_dir / "tasks").mkdir(parents=True, exist_ok=True)
    for run in runs:
        path = run_dir / "tasks" / (run.name.replace("/", "__") + ".json")
        path.write_text(json.dumps(run.to_json(), indent=2, ensure_ascii=False), encoding="utf-8")
    results = [{k: v for k, v in run.to_json().items() if k != "response"} for run in runs]
    body = {**meta, "summary": summary, "results": results}
    (run_dir / "summary.json").write_text(json.dumps(body, indent=2, ensure_ascii=False), encoding="utf-8")
    return run_dir
