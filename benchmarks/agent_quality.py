"""Does the agent finish? Solved tasks, unanswered runs and repeats, ours against a plain loop.

The suite (``benchmarks.quality_tasks``: 47 small tasks that need a little code, answers
computed in the suite) runs through arms that share one model, loaded once, behind one
real server (real uvicorn, real sandbox), task by task in turn so that load drifting on a
shared machine hits every arm alike:

* ``server``: ``POST /v1/agent`` with the server's defaults (the loop policy as shipped).
* ``plain``: the baseline, a plain CodeAct loop as the reference chat demo ran it: a
  CodeAct system prompt, the task as the user message, generation through
  ``/v1/completions`` on the same model that stops at ``</execute>`` or the end of the turn,
  no grammar and no policy, the output back as an ``Execution Output:`` user message, the
  code run in the same kind of sandbox. It ends at a ``<solution>``, at a turn without
  ``<execute>`` (that reply is its answer), or at the turn limit.
* policy variants, each ``/v1/agent`` with one named option changed (``--arms``):
  ``no-repeat`` (``on_repeat: off``), ``note-repeat`` (``on_repeat: note``), ``note-failed``
  (``on_failed_repeat: note``), ``no-final`` (``final_answer: false``), ``chat-style``
  (``prompt_style: chat``), ``no-fence`` (``fenced_code: off``), ``no-code-answer``
  (``code_answer: off``), ``model-forced`` (``forced_answer: model``), ``whole-plan``
  (``code_plan: whole``: a sentence of plan, then complete code), ``steps-plan``
  (``code_plan: steps``: a little code at a time, the prompt before issue 27), ``steps-compute`` (the
  ``steps`` prompt plus only ``whole``'s "let the code compute" sentence, sent as a client
  system message), ``literal-note`` and ``literal-off`` (``literal_code``), ``fed-back-off``
  (``fed_back_output: off``), ``unrun-off`` (``unrun_answer: off``), ``samples-3``,
  ``issue26-defaults`` (the defaults before issue 27), ``all-off``
  (all of these off), so each mechanism's effect is
  measured on and off in the same run. (``restate`` and ``execute-unverified`` measured
  ``restate_task`` and ``unverified_answer``, options removed in issue 26 after measuring
  nothing; ``benchmarks/RESULTS.md`` keeps their rows.)
* ``--server-arm NAME=URL`` adds an arm served elsewhere (e.g. an older commit of ours).

Per arm: solved %, runs that ended without an answer (turn limit, context full, error),
repeated identical actions (an execution of code whose syntax tree equals an earlier one
in the same run, counting repeats the policy turned into answers), forced answers, mean
turns (all runs and solved runs), completion tokens per solved task, and tok/s (completion tokens over generation time).

Run: ``python -m benchmarks.agent_quality --model PATH`` (``--help``); it prints a table
and writes ``benchmarks/results/agent_quality.json`` with every run's steps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import embedded_model_path
from benchmarks.forced_answers import forced_misread
from benchmarks.m3tooleval.in_process import build_engine, served, server_settings
from benchmarks.m3tooleval.report import run_metadata
from benchmarks.plain_codeact import PlainLoop
from benchmarks.quality_halves import HALVES, SEED, half_of
from benchmarks.quality_tasks import Task, build_tasks, check_answer, check_file
from server.agent.policy import code_key

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "agent_quality.json"

#: an arm's extra that goes in as the client's system message (appended to the system prompt)
SYSTEM_MESSAGE = "system_message"
COMPUTE_SENTENCE = "Let the code do every calculation: do not work values out yourself and print them."

#: ``/v1/agent`` request extras of each in-process arm; ``plain`` is the baseline loop.
ARMS: dict[str, dict[str, Any] | None] = {
    "server": {},
    "plain": None,
    "no-repeat": {"on_repeat": "off"},
    "note-repeat": {"on_repeat": "note"},
    "note-failed": {"on_failed_repeat": "note"},
    "no-final": {"final_answer": False},
    "chat-style": {"prompt_style": "chat"},
    "no-fence": {"fenced_code": "off"},
    "no-code-answer": {"code_answer": "off"},
    "model-forced": {"forced_answer": "model"},
    "whole-plan": {"code_plan": "whole"},
    "steps-plan": {"code_plan": "steps"},
    "plan-prompt": {"code_plan": "plan"},  # issue 27's default prompt (issue 35 went back to steps)
    # the old prompt plus only the "let the code compute" sentence, as a client's system message
    "steps-compute": {"code_plan": "steps", SYSTEM_MESSAGE: COMPUTE_SENTENCE},
    "samples-3": {"samples": 3},
    "literal-note": {"literal_code": "note"},
    "literal-off": {"literal_code": "off"},
    "fed-back-off": {"fed_back_output": "off"},
    "unrun-off": {"unrun_answer": "off"},
    "answer-tokens-384": {"answer_tokens": 384},
    "hints": {"observation_hints": "hint"},
    "hints-off": {"observation_hints": "off"},
    # the defaults before issue 27 (issue 26's): the old prompt, the model's forced answers,
    # code that computes nothing kept, a <solution> bounded only by the turn's max_tokens (384 here)
    "issue26-defaults": {
        "forced_answer": "model",
        "code_plan": "steps",
        "literal_code": "off",
        "answer_tokens": 384,
        "fed_back_output": "off",
        "unrun_answer": "off",
        "observation_hints": "off",
    },
    "all-off": {
        "on_repeat": "off",
        "final_answer": False,
        "prompt_style": "chat",
        "fenced_code": "off",
        "code_answer": "off",
        "forced_answer": "model",
        "code_plan": "steps",
        "literal_code": "off",
        "fed_back_output": "off",
        "unrun_answer": "off",
        "observation_hints": "off",
    },
}
NO_ANSWER = {"max_turns", "length", "error"}


@dataclass
class Run:
    """One task on one arm."""

    task: str
    arm: str
    solved: bool = False
    answer: str | None = None
    finish_reason: str | None = None
    turns: int = 0
    repeats: int = 0
    forced: str | None = None
    completion_tokens: int = 0
    generation_s: float = 0.0
    wall_s: float = 0.0
    error: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    agreement: dict[str, Any] | None = None  # with samples: how many runs agreed on the answer
    #: with samples: each run's own answer judged (run 0 is the request's greedy run: k = 1 in the same run)
    sample_solved: list[bool] | None = None


def repeated_actions(codes: Sequence[str]) -> int:
    """Executions of code whose syntax tree equals an earlier execution's in the same run."""
    seen: set[str] = set()
    count = 0
    for code in codes:
        key = code_key(code)
        count += key in seen
        seen.add(key)
    return count


def judge(task: Task, answer: str | None, read_file: Any) -> bool:
    if task.kind == "file":
        return check_file(task, read_file(task.file)) if answer is not None else False
    return check_answer(task, answer)


def run_server_arm(client: httpx.Client, task: Task, arm: str, extras: dict[str, Any], args: Any, model: str) -> Run:
    extras = dict(extras)
    system = extras.pop(SYSTEM_MESSAGE, None)
    messages = [{"role": "system", "content": system}] if system else []
    body = {
        "model": model,
        "messages": [*messages, {"role": "user", "content": task.prompt}],
        "max_turns": args.max_turns,
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "execution_timeout": 30,
        **extras,
    }
    run = Run(task.name, arm)
    started = time.perf_counter()
    try:
        reply = client.post("/v1/agent", json=body)
        reply.raise_for_status()
    except httpx.HTTPError as exc:
        run.error, run.finish_reason = f"{type(exc).__name__}: {exc}", "error"
        run.wall_s = time.perf_counter() - started
        return run
    run.wall_s = time.perf_counter() - started
    response = reply.json()
    agent = response["agent"]
    steps = agent["steps"]
    run.finish_reason = agent["finish_reason"]
    run.turns = agent["turns"]
    run.forced = agent.get("forced_answer")
    run.steps = steps
    run.agreement = agent.get("agreement")
    run.completion_tokens = response["usage"]["completion_tokens"]
    run.generation_s = sum(s["timings"].get("generation_s", 0.0) for s in steps)
    codes = [s["action"]["code"] for s in steps if s["action"]["type"] == "execute"]
    codes += [s["repeated_code"] for s in steps if s.get("repeated_code")]
    run.repeats = repeated_actions(codes)
    content = response["choices"][0]["message"]["content"]
    run.answer = content if run.finish_reason in ("solution", "no_action") else None
    session_id = agent["session_id"]

    def read_file(path: str) -> str | None:
        got = client.get(f"/v1/agent/sessions/{session_id}/files/{path}")
        return got.text if got.status_code == 200 else None

    run.solved = judge(task, run.answer, read_file)
    if agent.get("samples"):
        # A file task's file is read from the winning session (the others are closed).
        run.sample_solved = [judge(task, sample["answer"], read_file) for sample in agent["samples"]]
    with contextlib.suppress(httpx.HTTPError):
        client.delete(f"/v1/agent/sessions/{session_id}")
    return run


def run_plain_arm(base_url: str, task: Task, args: Any, model: str) -> Run:
    run = Run(task.name, "plain")
    started = time.perf_counter()
    with PlainLoop(base_url, model, max_turns=args.max_turns, max_tokens=args.max_tokens) as loop:
        outcome = loop.solve(task.prompt)
        run.finish_reason = outcome.finish_reason
        run.turns = len(outcome.turns)
        run.answer = outcome.answer
        run.completion_tokens = outcome.completion_tokens
        run.generation_s = outcome.generation_s
        run.repeats = repeated_actions([t["code"] for t in outcome.turns if t.get("code") is not None])
        run.steps = outcome.turns
        run.error = outcome.error

        def read_file(path: str) -> str | None:
            target = loop.workspace / path
            return target.read_text(errors="replace") if target.is_file() else None

        run.solved = judge(task, run.answer, read_file)
    run.wall_s = time.perf_counter() - started
    return run


def summarize(runs: Sequence[Run], arms: Sequence[str]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for arm in arms:
        mine = [r for r in runs if r.arm == arm]
        solved = [r for r in mine if r.solved]
        tokens = sum(r.completion_tokens for r in mine)
        seconds = sum(r.generation_s for r in mine)
        summary[arm] = {
            "tasks": len(mine),
            "solved": len(solved),
            "solved_pct": round(100 * len(solved) / len(mine), 1) if mine else 0.0,
            "no_answer": sum(r.finish_reason in NO_ANSWER for r in mine),
            "no_answer_pct": round(100 * sum(r.finish_reason in NO_ANSWER for r in mine) / len(mine), 1)
            if mine
            else 0.0,
            "repeated_actions": sum(r.repeats for r in mine),
            "forced_answers": sum(r.forced is not None for r in mine),
            # issue 27: forced answers held against the one value printed right above them
            "forced_after_one_value": sum(forced_misread(r.forced, r.answer, r.steps) is not None for r in mine),
            "forced_misreads": sum(forced_misread(r.forced, r.answer, r.steps) is True for r in mine),
            "mean_turns": round(sum(r.turns for r in mine) / len(mine), 2) if mine else 0.0,
            "mean_turns_solved": round(sum(r.turns for r in solved) / len(solved), 2) if solved else None,
            "tok_per_s": round(tokens / seconds, 1) if seconds else None,
            # issue 27: what an answer costs: every run's completion tokens over the solved ones
            "completion_tokens": tokens,
            "tokens_per_solved": round(tokens / len(solved)) if solved else None,
            **_sample_figures(mine),
            "wall_s": round(sum(r.wall_s for r in mine), 1),
        }
    return summary


def _sample_figures(runs: Sequence[Run]) -> dict[str, Any]:
    """With samples: how many tasks run 0 alone solved (k = 1 in the same run, on the same
    tasks), how many any run solved (the vote's ceiling), and how often the runs agreed."""
    sampled = [r for r in runs if r.sample_solved]
    if not sampled:
        return {}
    return {
        "first_sample_solved": sum(r.sample_solved[0] for r in sampled if r.sample_solved),
        "any_sample_solved": sum(any(r.sample_solved) for r in sampled if r.sample_solved),
        "unanimous": sum(1 for r in sampled if r.agreement and r.agreement["votes"] == r.agreement["of"]),
    }


def render_table(summary: dict[str, dict[str, Any]]) -> str:
    head = (
        "arm", "solved", "no answer", "repeated actions", "forced", "forced misreads", "mean turns",
        "turns (solved)", "tokens / solved", "tok/s",
    )  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, s in summary.items():
        lines.append(
            f"| {arm} | {s['solved']}/{s['tasks']} ({s['solved_pct']}%) | {s['no_answer']} ({s['no_answer_pct']}%) "
            f"| {s['repeated_actions']} | {s['forced_answers']} "
            f"| {s.get('forced_misreads', '?')}/{s.get('forced_after_one_value', '?')} "
            f"| {s['mean_turns']} | {s['mean_turns_solved']} "
            f"| {s.get('tokens_per_solved', '?')} | {s['tok_per_s']} |"
        )
    for arm, s in summary.items():
        if "first_sample_solved" in s:
            lines.append(
                f"\n{arm}: run 0 alone (k = 1) solved {s['first_sample_solved']}/{s['tasks']}, any run "
                f"{s['any_sample_solved']}/{s['tasks']}, the vote {s['solved']}/{s['tasks']}; "
                f"unanimous on {s['unanimous']}"
            )
    return "\n".join(lines)


def _write(path: Path, data: dict[str, Any]) -> None:
    """Written after every run too, so a long run interrupted still leaves its records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.agent_quality",
        description="Agent quality on a 47-task suite: /v1/agent (and policy variants) against a plain "
        "CodeAct loop on the same model, in one run.",
    )
    parser.add_argument("--model", default=None, help="GGUF path or catalog name (default: the embedded SmolLM2)")
    parser.add_argument(
        "--arms", default="server,plain", help=f"comma-separated arms, from: {', '.join(ARMS)} (default: server,plain)"
    )
    parser.add_argument(
        "--server-arm",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="an extra /v1/agent arm served at URL (repeatable)",
    )
    parser.add_argument("--tasks", default=None, help="comma-separated task names or categories (default: all)")
    parser.add_argument(
        "--half",
        choices=HALVES,
        default="all",
        help="the suite's tuning half, its held-out half (judge defaults here, never tune on it; "
        f"benchmarks.quality_halves, seed {SEED}), or all of it (default)",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N tasks")
    parser.add_argument("--max-turns", type=int, default=5, help="turn budget per task (default 5, the server's)")
    parser.add_argument("--max-tokens", type=int, default=384, help="tokens per turn (default 384)")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    parser.add_argument("--ctx-size", type=int, default=8192, help="context window (default 8192)")
    parser.add_argument(
        "--rescore",
        type=Path,
        metavar="JSON",
        help="judge the answers of a results file again with this checker (file tasks keep "
        "their verdicts: the workspace is gone) and rewrite its summary; runs nothing",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default: {DEFAULT_OUT})")
    return parser


def select(tasks: list[Task], spec: str | None, limit: int | None) -> list[Task]:
    if spec:
        wanted = {s.strip() for s in spec.split(",") if s.strip()}
        tasks = [t for t in tasks if t.name in wanted or t.category in wanted]
    return tasks[:limit] if limit else tasks


def rescore(path: Path) -> int:
    """Re-judge saved answers (the checker got fairer; the model's answers did not change)."""
    data = json.loads(path.read_text())
    tasks = {t.name: t for t in build_tasks()}
    runs = [Run(**r) for r in data["runs"]]
    changed = 0
    for run in runs:
        task = tasks[run.task]
        if task.kind != "file":
            verdict = check_answer(task, run.answer)
            changed += verdict != run.solved
            run.solved = verdict
    arms = list(dict.fromkeys(r.arm for r in runs))
    data["summary"] = summarize(runs, arms)
    data["runs"] = [asdict(r) for r in runs]
    data.setdefault("meta", {})["rescored"] = {"verdicts_changed": changed}
    _write(path, data)
    print(render_table(data["summary"]))
    print(f"rescored {path}: {changed} verdicts changed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rescore:
        return rescore(args.rescore)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    extra = dict(item.split("=", 1) for item in args.server_arm)
    tasks = select(half_of(build_tasks(), args.half), args.tasks, args.limit)
    model = args.model or str(embedded_model_path())
    settings = server_settings(model, ctx_size=args.ctx_size, max_turns=args.max_turns, threads=args.threads)
    engine = build_engine(settings, oracle=False, tasks=[])
    model_id = engine.info.model_id
    runs: list[Run] = []
    started = time.perf_counter()
    # The commit and time as the run starts: the tree may move on during a run of hours.
    begun = run_metadata({})
    with served(settings, engine) as url, httpx.Client(base_url=url, timeout=1800) as client:
        clients = {name: httpx.Client(base_url=u, timeout=1800) for name, u in extra.items()}
        try:
            for number, task in enumerate(tasks, 1):
                for arm in [*arms, *clients]:
                    if arm in clients:
                        run = run_server_arm(clients[arm], task, arm, {}, args, "default")
                    elif ARMS[arm] is None:
                        run = run_plain_arm(url, task, args, model_id)
                    else:
                        run = run_server_arm(client, task, arm, ARMS[arm] or {}, args, model_id)
                    runs.append(run)
                    _write(args.out, {"partial": True, "runs": [asdict(r) for r in runs]})
                    mark = "ok " if run.solved else "-- "
                    print(
                        f"[{number}/{len(tasks)}] {arm:12s} {mark}{task.name:22s} {run.finish_reason:10s} "
                        f"turns={run.turns} repeats={run.repeats} answer={(run.answer or '')[:40]!r}",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            for c in clients.values():
                c.close()
    summary = summarize(runs, [*arms, *clients])
    table = render_table(summary)
    print(table)
    meta = run_metadata(
        {
            "model": model,
            "arms": arms,
            "server_arms": extra,
            "max_turns": args.max_turns,
            "max_tokens": args.max_tokens,
            "threads": args.threads,
            "ctx_size": args.ctx_size,
            "half": args.half,
            "halves_seed": SEED,
            "tasks": [t.name for t in tasks],
            "wall_s": round(time.perf_counter() - started, 1),
        }
    )
    meta.update(commit=begun["commit"], started=begun["started"])
    _write(args.out, {"meta": meta, "summary": summary, "runs": [asdict(r) for r in runs]})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
