"""``python -m benchmarks.m3tooleval``: run M3ToolEval against the agent endpoint.

Modes:

* ``--server URL``: POST each task to ``URL/v1/agent`` (a server you started).
* default (no ``--server``): start the server in this process (``run_in_process``).
* ``--oracle``: the model is a scripted perfect agent (``oracle_model.OracleResponder``);
  the score must be 82/82, which checks tools, sandbox delivery, observations and judge.
  It needs the in-process server, whose engine the harness can replace.
* ``--oracle --dry-run``: the same two scripted turns, with no server at all.

The last printed line is always ``success N/M`` (N judged correct by the reference judge,
M tasks run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .harness import MAX_TURNS, TaskRun, run_against_server, run_in_process, select_tasks
from .oracle_model import dry_run_all
from .prompt import user_message
from .report import DEFAULT_OUT, render_table, run_metadata, summarize, write_results

DEFAULT_MODEL = "default"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.m3tooleval",
        description="Measure agent quality on M3ToolEval (82 multi-tool tasks) via /v1/agent.",
    )
    parser.add_argument(
        "--server", metavar="URL", help="base URL of a running server (default: start one in this process)"
    )
    parser.add_argument(
        "--tasks", metavar="LIST", help="comma-separated task names, short names, domains or globs (default: all 82)"
    )
    parser.add_argument("--limit", type=int, metavar="N", help="run only the first N selected")
    parser.add_argument("--oracle", action="store_true", help="use the scripted oracle model; must score every task")
    parser.add_argument(
        "--dry-run", action="store_true", help="with --oracle: no server, run the scripted turns locally"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, metavar="DIR", help=f"where to write results (default: {DEFAULT_OUT})"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model id sent in each request")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("CODEACT_API_KEY"),
        help="bearer token for the server (default: $CODEACT_API_KEY)",
    )
    parser.add_argument(
        "--max-turns", type=int, default=MAX_TURNS, help=f"turn limit per task (default: {MAX_TURNS}, as in the paper)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for one task's response (default: 900)"
    )
    return parser


def _progress(run: TaskRun) -> None:
    mark = "ok " if run.reference else ("~  " if run.lenient else "-- ")
    detail = run.error or f"{run.finish_reason}, {run.turns} turns, answer {run.answer!r}"
    print(f"{mark}{run.name}: {detail}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.dry_run and not args.oracle:
        raise SystemExit("--dry-run only applies to --oracle")
    if args.oracle and args.server:
        raise SystemExit("--oracle needs the in-process server (its scripted model lives here); drop --server")
    tasks = select_tasks(args.tasks, args.limit)
    model = "oracle" if args.oracle else args.model
    started = time.perf_counter()
    if args.dry_run:
        runs = dry_run_all(tasks, user_message)
        for run in runs:
            _progress(run)
    elif args.server:
        runs = run_against_server(
            args.server,
            tasks,
            model=model,
            api_key=args.api_key,
            timeout_s=args.timeout,
            max_turns=args.max_turns,
            on_result=_progress,
        )
    else:
        runs = run_in_process(tasks, model=model, oracle=args.oracle, max_turns=args.max_turns, on_result=_progress)
    summary = summarize(runs, time.perf_counter() - started)
    settings = {
        "model": model,
        "server": args.server or "in-process",
        "oracle": args.oracle,
        "dry_run": args.dry_run,
        "max_turns": args.max_turns,
        "temperature": 0,
        "tasks": args.tasks,
        "limit": args.limit,
    }
    run_dir = write_results(args.out, runs, summary, run_metadata(settings))
    print(render_table(summary))
    print(f"results in {run_dir}")
    print(f"success {summary['success_reference']}/{len(runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
