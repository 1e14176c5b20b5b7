"""One ``POST /v1/agent`` run against our server: per-turn timings, tokens, and memory.

On the synthetic model the agent's text is meaningless (random weights), so this checks
that a run completes through the whole loop on the GPU build (grammar, sandbox, turns) and
how long each turn's phases take; the answer is not judged. The server's ``timings`` per
step come back unchanged, with the step's action type, tokens and how its generation ended.
Memory (``benchmarks.gpu.memory_probe``) is taken before and after the run.

Run: ``python -m benchmarks.gpu.agent_run BASE_URL OUT.json [--pid SERVER_PID]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.gpu.memory_probe import snapshot
from benchmarks.gpu.stream_bench import CLOSE, served_model

TASK = "What is 2**100 modulo 997? Compute it with Python."


def turn_rows(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-turn figures worth a table: action, tokens, finish, and every timing."""
    rows = []
    for step in steps:
        tokens = step.get("tokens") or {}
        rows.append(
            {
                "turn": step.get("index"),
                "action": (step.get("action") or {}).get("type"),
                "prompt_tokens": tokens.get("prompt"),
                "cached_prompt_tokens": tokens.get("cached_prompt"),
                "completion_tokens": tokens.get("completion"),
                "generation_finish": step.get("generation_finish"),
                "timings": step.get("timings") or {},
            }
        )
    return rows


def run_agent(base: str, *, max_turns: int, max_tokens: int, timeout_s: float, pid: int | None) -> dict[str, Any]:
    """Send the task once (non-stream) and collect the answer's ``agent`` field."""
    result: dict[str, Any] = {"task": TASK, "max_turns": max_turns, "max_tokens": max_tokens}
    result["memory_before"] = snapshot(pid, "before agent run")
    with httpx.Client(timeout=timeout_s) as client:
        model = served_model(client, base)
        body = {
            "model": model,
            "messages": [{"role": "user", "content": TASK}],
            "max_turns": max_turns,
            "max_tokens": max_tokens,
        }
        started = time.perf_counter()
        try:
            response = client.post(base + "/v1/agent", json=body, headers=CLOSE)
        except httpx.HTTPError as exc:  # a timeout too: the file still says what happened
            result.update(wall_s=time.perf_counter() - started, status_code=None, error=f"{type(exc).__name__}: {exc}")
            result["memory_after"] = snapshot(pid, "after agent run (failed)")
            return result
        result["wall_s"] = time.perf_counter() - started
    result["status_code"] = response.status_code
    result["memory_after"] = snapshot(pid, "after agent run")
    if response.status_code != 200:
        result["error"] = response.text[-2000:]
        return result
    agent = response.json().get("agent") or {}
    result.update(
        finish_reason=agent.get("finish_reason"),
        turns=agent.get("turns"),
        usage=agent.get("usage"),
        agent_error=agent.get("error"),
        steps=turn_rows(agent.get("steps") or []),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.agent_run", description=__doc__.split("\n")[0])
    parser.add_argument("base_url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--pid", type=int, help="the server's pid, for its memory")
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    result = run_agent(
        args.base_url, max_turns=args.max_turns, max_tokens=args.max_tokens, timeout_s=args.timeout, pid=args.pid
    )
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if result["status_code"] != 200:
        print(f"agent run failed: HTTP {result['status_code']}: {result.get('error', '')[-500:]}", file=sys.stderr)
        return 1
    print(f"agent run: {result['finish_reason']} after {result['turns']} turns in {result['wall_s']:.2f} s")
    for row in result["steps"]:
        timings = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in row["timings"].items())
        print(f"  turn {row['turn']}: {row['action']}, {row['completion_tokens']} tokens; {timings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
