"""``python -m benchmarks.m3tooleval``: run M3ToolEval against the agent endpoint.

Modes:

* ``--server URL``: POST each task to ``URL/v1/agent`` (a server you started); ``--model``
  is the model id sent in each request (default ``default``, which every server answers to).
* default (no ``--server``): start the real server in this process on a loopback port and
  run the tasks over HTTP (``in_process.run_in_process``); ``--model`` is what to load: a
  catalog name, a GGUF path, or ``auto`` (default: the CodeActAgent 7B when pulled, else the
  embedded SmolLM2-135M).
* ``--oracle``: the model is a scripted perfect agent (``oracle_model.OracleResponder``)
  behind the real server, agent loop and sandbox; the score must be 82/82, which checks
  tools, sandbox delivery, observations and judge. It needs the in-process server, whose
  engine the harness can replace.
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

from models.engine.api import Engine
from server.composition import SetupError

from .harness import MAX_TURNS, TaskRun, run_against_server, select_tasks
from .in_process import run_in_process
from .oracle_model import dry_run_all
from .prompt import user_message
from .report import DEFAULT_OUT, render_table, run_metadata, summarize, write_results

SERVER_DEFAULT_MODEL = "default"
IN_PROCESS_DEFAULT_MODEL = "auto"


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
    parser.add_argument(
        "--model",
        help=f"with --server: the model id sent in each request (default: {SERVER_DEFAULT_MODEL}); "
        f"in-process: the model to load, a catalog name, a .gguf path or auto "
        f"(default: {IN_PROCESS_DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--ctx-size", type=int, metavar="TOKENS", help="in-process: context window (default: the server's)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("CODEACT_API_KEY"),
        help="bearer token for the server (default: $CODEACT_API_KEY)",
    )
    parser.add_argument(
        "--max-turns", type=int, default=MAX_TURNS, help=f"turn limit per task (default: {MAX_TURNS}, as in the paper)"
    )
    parser.add_argument(
        "--threads", type=int, metavar="N", help="in-process: CPU threads for generation (default: the server's)"
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help="tokens per model turn (default: the server's, 1024); lower it to bound a slow CPU run",
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
    model = (
        "oracle" if args.oracle else args.model or (SERVER_DEFAULT_MODEL if args.server else IN_PROCESS_DEFAULT_MODEL)
    )
    loaded: dict[str, str] = {}

    def note_engine(engine: Engine) -> None:
        loaded.update(model_id=engine.info.model_id, model_path=engine.info.model_path, backend=engine.info.backend)
        print(f"serving {engine.info.model_id} ({engine.info.model_path}) on {engine.info.backend}", flush=True)

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
            max_tokens=args.max_tokens,
            on_result=_progress,
        )
    else:
        try:
            runs = run_in_process(
                tasks,
                model=model,
                oracle=args.oracle,
                max_turns=args.max_turns,
                ctx_size=args.ctx_size,
                threads=args.threads,
                max_tokens=args.max_tokens,
                timeout_s=args.timeout,
                on_result=_progress,
                on_engine=note_engine,
            )
        except SetupError as exc:
            raise SystemExit(f"error: {exc}") from exc
    summary = summarize(runs, time.perf_counter() - started)
    settings = {
        "model": loaded.get("model_id", model),
        "model_spec": model,
        **{k: v for k, v in loaded.items() if k != "model_id"},
        "server": args.server or "in-process",
        "ctx_size": args.ctx_size,
        "threads": args.threads,
        "oracle": args.oracle,
        "dry_run": args.dry_run,
        "max_turns": args.max_turns,
        "max_tokens_per_turn": args.max_tokens,
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
