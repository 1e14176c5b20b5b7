"""How often the model's agent turns are malformed, with and without the action grammar.

Issue 4 promises that grammar-constrained decoding makes every CodeAct turn well-formed.
This benchmark checks that promise on the real model through the real server, and shows
what the grammar saves: N tasks (small arithmetic/string questions plus a few M3ToolEval
tasks with their tools) are each run twice through ``POST /v1/agent`` on an in-process
server (real uvicorn, real sandbox), once with ``"grammar": true`` (the server's default
structure enforcement) and once with ``"grammar": false`` (unconstrained), interleaved task
by task so that load drifting on a shared machine hits every arm alike. ``--gbnf`` adds a
third arm, ``"grammar": "gbnf"`` (one GBNF grammar over the whole turn), for comparison.
Every assistant turn is read back raw from the session
(``GET /v1/agent/sessions/{id}``) and judged here, independently of the server's parser.

**Malformed turn.** A turn is well-formed when it is free text followed by exactly one
action block, ``<execute>CODE</execute>`` or ``<solution>ANSWER</solution>``, with a
non-blank body, and nothing but whitespace after the closing tag (the format CodeAct was
trained on, see DESIGN.md). Any other turn is malformed, in one of three kinds:

* ``no_action``: no action tag at all (a chat answer, or code in a Markdown fence);
* ``unclosed``: an opening tag whose closing tag never came (typically a turn cut off by
  the per-turn token limit, or ended by the model inside the block);
* ``garbled``: tags present but not one clean block: a closing tag without its opening,
  mismatched or several blocks, an empty body, or text after the action.

With the grammar the target is 0%. A turn the token limit cuts inside its action is still
counted malformed: the grammar cannot close a block it was not given the tokens for, and
hiding those turns would flatter it.

**Turns per task** counts model turns; **tok/s** is completion tokens over the time spent
generating them (the steps' ``generation_s``, prompt processing included).

Run: ``python -m benchmarks.agent_wellformed`` (``--help`` for the knobs). It prints a
table and writes ``benchmarks/results/agent_wellformed.json`` (commit, machine, model,
settings, per-turn records).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.m3tooleval.harness import agent_request, select_tasks
from benchmarks.m3tooleval.in_process import build_engine, served, server_settings
from benchmarks.m3tooleval.report import run_metadata

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "agent_wellformed.json"

#: Small questions a code-writing agent answers in one or two turns.
SMALL_TASKS: tuple[str, ...] = (
    "What is 17 * 23?",
    "What is the sum of the integers from 1 to 100?",
    "What is 2 to the power of 20?",
    "Is 97 a prime number? Answer yes or no.",
    "What is the greatest common divisor of 84 and 126?",
    "Reverse the string 'codeact'.",
    "How many vowels are in the word 'benchmark'?",
    "Write 'hello world' in upper case.",
    "Sort the letters of 'python' alphabetically and join them into one string.",
    "How many words are in the sentence 'the quick brown fox jumps over the lazy dog'?",
)

#: M3ToolEval tasks (one per domain), sent with their tools as the harness sends them.
M3_TASKS: tuple[str, ...] = (
    "message_decoder/full_alien_message_decoding",
    "trade_calculator/estimate_final_value",
    "travel_itinerary_planning/plan_trip_to_0",
)

_TAG = re.compile(r"</?(?:execute|solution)>")
_OPENERS = ("<execute>", "<solution>")


def classify_turn(raw: str) -> str | None:
    """None for a well-formed turn, else its malformation kind (see the module docstring)."""
    tags = [(m.group(), m.start(), m.end()) for m in _TAG.finditer(raw)]
    if not tags:
        return "no_action"
    if len(tags) == 1:
        return "unclosed" if tags[0][0] in _OPENERS else "garbled"
    if len(tags) != 2:
        return "garbled"
    (opener, _, body_start), (closer, body_end, end) = tags
    if opener not in _OPENERS or closer != opener.replace("<", "</", 1):
        return "garbled"
    if not raw[body_start:body_end].strip() or raw[end:].strip():
        return "garbled"
    return None


Arm = bool | str  # the request's "grammar" value


def arm_name(grammar: Arm) -> str:
    return {True: "grammar", False: "no_grammar"}.get(grammar, str(grammar))  # type: ignore[call-overload]


@dataclass
class TaskResult:
    """One task in one arm: its turns (raw text and verdict) and token figures."""

    task: str
    grammar: Arm
    finish_reason: str | None = None
    turns: list[dict[str, Any]] = field(default_factory=list)
    completion_tokens: int = 0
    generation_s: float = 0.0
    wall_s: float = 0.0
    error: str | None = None
    left_out: int = 0  # steps the loop left out of the history (repeated failures)

    @property
    def malformed(self) -> int:
        return sum(turn["malformed"] is not None for turn in self.turns)


def task_bodies(model: str, max_turns: int, max_tokens: int, limit: int | None) -> list[tuple[str, dict[str, Any]]]:
    """(label, request body without ``grammar``) for every task, small ones first."""
    bodies = [
        (
            f"small/{i}",
            {
                "model": model,
                "messages": [{"role": "user", "content": text}],
                "max_turns": max_turns,
                "max_tokens": max_tokens,
                "temperature": 0,
                "execution_timeout": 30,
            },
        )
        for i, text in enumerate(SMALL_TASKS)
    ]
    for name in M3_TASKS:
        task = select_tasks(name)[0]
        bodies.append((name, agent_request(task, model, max_turns, max_tokens)))
    return bodies[:limit] if limit is not None else bodies


def run_one(client: httpx.Client, label: str, body: dict[str, Any], grammar: Arm) -> TaskResult:
    """POST one task, read its raw turns back from the session, judge them, delete the session."""
    result = TaskResult(label, grammar)
    started = time.perf_counter()
    reply = client.post("/v1/agent", json={**body, "grammar": grammar, "stream": False})
    result.wall_s = time.perf_counter() - started
    if reply.status_code != 200:
        result.error = f"HTTP {reply.status_code}: {reply.text[:300]}"
        return result
    agent = reply.json()["agent"]
    result.finish_reason = agent["finish_reason"]
    session = client.get(f"/v1/agent/sessions/{agent['session_id']}").json()
    client.delete(f"/v1/agent/sessions/{agent['session_id']}")
    raws = [m["content"] for m in session["messages"] if m["role"] == "assistant"]
    # A turn the loop left out of the history (on_failed_repeat or literal_code: resample) has
    # no message to judge; it is counted in the steps, not in the turns.
    kept = [step for step in agent["steps"] if not step.get("left_out")]
    result.left_out = len(agent["steps"]) - len(kept)
    for raw, step in zip(raws, kept, strict=True):
        result.turns.append(
            {
                "raw": raw,
                "malformed": classify_turn(raw),
                "server_action": step["action"]["type"],
                "generation_finish": step["generation_finish"],
                "completion_tokens": step["tokens"]["completion"],
            }
        )
        result.completion_tokens += step["tokens"]["completion"]
        result.generation_s += step["timings"].get("generation_s", 0.0)
    return result


def summarize(results: Sequence[TaskResult], grammars: Sequence[Arm]) -> dict[str, Any]:
    """Per arm: malformed share and kinds, turns per task, tok/s."""
    arms: dict[str, Any] = {}
    for grammar in grammars:
        arm = [r for r in results if arm_name(r.grammar) == arm_name(grammar)]
        turns = [t for r in arm for t in r.turns]
        kinds: dict[str, int] = {}
        for turn in turns:
            if turn["malformed"]:
                kinds[turn["malformed"]] = kinds.get(turn["malformed"], 0) + 1
        tokens = sum(r.completion_tokens for r in arm)
        seconds = sum(r.generation_s for r in arm)
        arms[arm_name(grammar)] = {
            "tasks": len(arm),
            "errors": sum(r.error is not None for r in arm),
            "turns": len(turns),
            "turns_per_task": len(turns) / len(arm) if arm else 0.0,
            "malformed_turns": sum(kinds.values()),
            "malformed_share": sum(kinds.values()) / len(turns) if turns else 0.0,
            "malformed_kinds": kinds,
            "cut_by_token_limit": sum(t["generation_finish"] == "length" for t in turns),
            "solutions": sum(r.finish_reason == "solution" for r in arm),
            "completion_tokens": tokens,
            "tokens_per_s": tokens / seconds if seconds else 0.0,
            "wall_s": sum(r.wall_s for r in arm),
        }
    return arms


def render_table(arms: dict[str, Any]) -> str:
    """One row per arm; ``cut`` counts turns the per-turn token limit ended."""
    header = (
        f"{'arm':<11} {'tasks':>5} {'turns':>5} {'turns/task':>10} {'malformed':>13} {'cut':>5} {'tok/s':>7}  kinds"
    )
    rows = [header, "-" * len(header)]
    for name, a in arms.items():
        rows.append(
            f"{name:<11} {a['tasks']:>5} {a['turns']:>5} {a['turns_per_task']:>10.2f} "
            f"{a['malformed_turns']:>4} {a['malformed_share']:>7.1%} {a['cut_by_token_limit']:>5} "
            f"{a['tokens_per_s']:>7.1f}  {a['malformed_kinds']}"
        )
    return "\n".join(rows)


def backend_props(url: str | None) -> dict[str, Any] | None:
    """Which build a remote backend runs (llama-server's ``/props``), for the result's provenance."""
    if not url:
        return None
    try:
        props = httpx.get(url.rstrip("/") + "/props", timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return None
    keys = ("build_info", "model_path", "total_slots")
    return {k: props[k] for k in keys if k in props} if isinstance(props, dict) else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agent_wellformed", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="auto", help="catalog name, .gguf path or auto (default: auto)")
    parser.add_argument("--limit", type=int, metavar="N", help="run only the first N tasks (small ones first)")
    parser.add_argument("--max-turns", type=int, default=5, help="turns per task (default: 5, the server's)")
    parser.add_argument("--max-tokens", type=int, default=384, help="tokens per turn (default: 384)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for generation (default: 1)")
    parser.add_argument(
        "--engine-url",
        metavar="URL",
        help="generate on this OpenAI-compatible backend (serve --engine openai) instead of a local GGUF",
    )
    parser.add_argument(
        "--engine-grammar",
        choices=("llama-server", "vllm", "none"),
        default="llama-server",
        help="with --engine-url: how the grammar travels (default: llama-server)",
    )
    parser.add_argument("--gbnf", action="store_true", help='add the arm "grammar": "gbnf" (whole-turn GBNF)')
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file (default: {DEFAULT_OUT})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = server_settings(args.model, max_turns=args.max_turns, threads=args.threads)
    if args.engine_url:  # the remote engine, exactly as `serve --engine openai` builds it
        settings = settings.model_copy(
            update={"engine": "openai", "engine_url": args.engine_url, "engine_grammar": args.engine_grammar}
        )
    engine = build_engine(settings, oracle=False, tasks=[])
    info = engine.info
    bodies = task_bodies(info.model_id, args.max_turns, args.max_tokens, args.limit)
    grammars: list[Arm] = [True, False, *(["gbnf"] if args.gbnf else [])]
    results: list[TaskResult] = []
    started = time.perf_counter()
    with served(settings, engine) as url, httpx.Client(base_url=url, timeout=3600) as client:
        for label, body in bodies:
            for grammar in grammars:
                result = run_one(client, label, body, grammar)
                results.append(result)
                verdicts = [t["malformed"] or "ok" for t in result.turns]
                print(f"{label:<50} {arm_name(grammar):<10} {result.error or verdicts}", flush=True)
    arms = summarize(results, grammars)
    meta = run_metadata(
        {
            "model": info.model_id,
            "model_path": info.model_path,
            "backend": info.backend,
            "backend_props": backend_props(args.engine_url),
            "threads": args.threads,
            "max_turns": args.max_turns,
            "max_tokens_per_turn": args.max_tokens,
            "arms": [arm_name(g) for g in grammars],
            "temperature": 0,
            "tasks": [label for label, _ in bodies],
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    body = {**meta, "wall_s": time.perf_counter() - started, "summary": arms, "results": [asdict(r) for r in results]}
    args.out.write_text(json.dumps(body, indent=2, ensure_ascii=False), encoding="utf-8")
    print(render_table(arms))
    print(f"results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
