"""One table of several ``agent_quality`` results: each arm on each model, on the same tasks.

Why: issue 35's rule is that a default may change only if it wins on the held-out half of
one model and does not lose on the other's. The runs of one model come from several files
(arms measured at different times); this joins them by model and arm, keeps only the tasks
every arm of that model ran (so a run cut short compares like with like), and prints per
arm: solved, the difference against the ``server`` arm (today's defaults), and the tasks
that flipped. It also checks the issue's guard: no task that ``issue26-defaults`` solves is
lost by ``server`` on every model at once.

Run: ``python -m benchmarks.quality_table FILE.json [FILE.json ...] [--out JSON]``; the model
of each file is read from its ``meta`` (its file name when the run was cut short).
``FILE.json@LABEL`` names that file's arm ``LABEL``: one arm per process means the same arm
(``server``) at two commits, or with a request option, lands in two files.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BASE = "server"


def model_of(path: Path, data: dict[str, Any]) -> str:
    model = (data.get("meta") or {}).get("model")
    if model:
        return Path(model).name.split("-instruct")[0]
    return next((tag for tag in ("0.5b", "1.5b") if tag in path.name), path.stem)


def load(paths: Sequence[Path | str]) -> dict[str, dict[str, dict[str, bool]]]:
    """model -> arm -> task -> solved; ``PATH@LABEL`` relabels that file's arm(s)."""
    table: dict[str, dict[str, dict[str, bool]]] = defaultdict(lambda: defaultdict(dict))
    for given in paths:
        name, _, label = str(given).partition("@")
        path = Path(name)
        data = json.loads(path.read_text())
        model = model_of(path, data)
        for run in data["runs"]:
            table[model][label or run["arm"]][run["task"]] = bool(run["solved"])
    return table


def common_tasks(arms: dict[str, dict[str, bool]]) -> list[str]:
    sets = [set(tasks) for tasks in arms.values()]
    return sorted(set.intersection(*sets)) if sets else []


def summarize(
    table: dict[str, dict[str, dict[str, bool]]], candidate: str = BASE, base_arm: str = BASE
) -> dict[str, Any]:
    out: dict[str, Any] = {"base": base_arm}
    for model, arms in sorted(table.items()):
        tasks = common_tasks(arms)
        base = arms.get(base_arm, {})
        rows = {}
        for arm, solved in sorted(arms.items()):
            won = [t for t in tasks if solved[t] and not base.get(t, False)]
            lost = [t for t in tasks if base.get(t, False) and not solved[t]]
            rows[arm] = {"solved": sum(solved[t] for t in tasks), "tasks": len(tasks), "won": won, "lost": lost}
        out[model] = rows
    out["guard"] = guard(table, candidate)
    return out


def guard(table: dict[str, dict[str, dict[str, bool]]], candidate: str = BASE) -> dict[str, Any]:
    """Tasks ``issue26-defaults`` solves that ``candidate`` loses on every model that ran both."""
    models = [m for m, arms in table.items() if candidate in arms and "issue26-defaults" in arms]
    lost_by_model = []
    for model in models:
        arms = table[model]
        tasks = set(arms[candidate]) & set(arms["issue26-defaults"])
        lost_by_model.append({t for t in tasks if arms["issue26-defaults"][t] and not arms[candidate][t]})
    lost_on_all = sorted(set.intersection(*lost_by_model)) if lost_by_model else []
    return {"candidate": candidate, "models": models, "lost_on_every_model": lost_on_all}


def render(summary: dict[str, Any]) -> str:
    lines = []
    for model, rows in summary.items():
        if model in ("guard", "base"):
            continue
        base = rows.get(summary["base"], {}).get("solved")
        lines += [f"\n{model}", f"| arm | solved | vs {summary['base']} | won | lost |", "|---|---|---|---|---|"]
        for arm, row in rows.items():
            delta = "" if base is None else f"{row['solved'] - base:+d}"
            won, lost = ", ".join(row["won"]), ", ".join(row["lost"])
            lines.append(f"| {arm} | {row['solved']}/{row['tasks']} | {delta} | {won} | {lost} |")
    guard_row = summary["guard"]
    models, lost = ", ".join(guard_row["models"]), ", ".join(guard_row["lost_on_every_model"]) or "none"
    lines.append(f"\nissue26-defaults' tasks lost by {guard_row['candidate']} on every model ({models}): {lost}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="agent_quality results (JSON); FILE@LABEL names its arm LABEL")
    parser.add_argument("--out", type=Path, default=None, help="also write the summary here (JSON)")
    parser.add_argument(
        "--candidate", default=BASE, help="the arm proposed as the new defaults, for the guard (default: server)"
    )
    parser.add_argument("--base", default=BASE, help="the arm the others are compared with (default: server)")
    args = parser.parse_args(argv)
    summary = summarize(load(args.files), args.candidate, args.base)
    print(render(summary))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
