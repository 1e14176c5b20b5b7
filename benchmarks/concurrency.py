"""Concurrent agent sessions against one server: throughput, TTFT, and queue behaviour.

N clients each run one streaming ``/v1/agent`` task at the same time through real uvicorn
on the real model. Reported per N: aggregate completion tok/s, p50/p99 time to the first
streamed token, how many requests the bounded queue refused (503, answered at once), and
that nothing hung (every request ended within the deadline).

Each level runs once per ``--parallel`` value in the same process: ``1`` is the old engine
(one sequence at a time: aggregate tok/s stays flat with N while TTFT grows with the
queue), larger values decode that many sessions' turns in one batch. A second table
isolates the engine: N concurrent greedy completions of a fixed length, no agent loop, no
sandbox, no HTTP, so the batching gain is not diluted by the time sessions spend elsewhere.

    python -m benchmarks.concurrency [--sessions 1 4 16] [--parallel 1 4] [--max-queue 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import embedded_model_path, median, print_table, write_result
from models.engine.api import GenerationRequest, generate_text
from models.engine.chat_format import render_chatml
from models.engine.llama.engine import LlamaEngine
from server.api.app import create_app
from server.api.loopback import LoopbackServer
from server.settings import Settings

TASK = "Compute the sum of the first {n} odd numbers with Python."


async def one_session(client: httpx.AsyncClient, n: int, max_tokens: int) -> dict[str, Any]:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": TASK.format(n=n + 3)}],
        "stream": True,
        "max_turns": 2,
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    started = time.perf_counter()
    first = None
    usage = None
    async with client.stream("POST", "/v1/agent", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return {"status": response.status_code, "wall_s": time.perf_counter() - started}
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            agent = json.loads(line[6:]).get("agent", {})
            if agent.get("type") == "delta" and first is None:
                first = time.perf_counter() - started
            if agent.get("type") == "done":
                usage = agent["usage"]
                await client.delete(f"/v1/agent/sessions/{agent['session_id']}")
    return {
        "status": 200,
        "wall_s": time.perf_counter() - started,
        "ttft_s": first,
        "completion_tokens": (usage or {}).get("completion_tokens", 0),
    }


async def run_level(url: str, sessions: int, max_tokens: int, deadline_s: float) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=deadline_s) as client:
        started = time.perf_counter()
        results = await asyncio.wait_for(
            asyncio.gather(*(one_session(client, k, max_tokens) for k in range(sessions))), deadline_s
        )
        wall = time.perf_counter() - started
    ok = [r for r in results if r["status"] == 200]
    refused = [r for r in results if r["status"] == 503]
    ttfts = sorted(r["ttft_s"] for r in ok if r["ttft_s"] is not None)
    tokens = sum(r["completion_tokens"] for r in ok)
    return {
        "sessions": sessions,
        "ok": len(ok),
        "refused_503": len(refused),
        "max_503_latency_s": max((r["wall_s"] for r in refused), default=0.0),
        "aggregate_tok_s": tokens / wall if wall else 0.0,
        "wall_s": wall,
        "ttft_p50_s": median(ttfts) if ttfts else None,
        "ttft_p99_s": ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))] if ttfts else None,
        "ttft_stdev_s": statistics.pstdev(ttfts) if len(ttfts) > 1 else 0.0,
    }


async def engine_level(engine: LlamaEngine, n: int, tokens: int) -> dict[str, Any]:
    """N fixed-length greedy completions submitted together, straight to the engine."""
    prompts = [
        render_chatml([{"role": "user", "content": TASK.format(n=k + 3)}]) + "<|im_start|>assistant\n" for k in range(n)
    ]
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            generate_text(engine, GenerationRequest(prompt=p, max_tokens=tokens, temperature=0, stop=()))
            for p in prompts
        )
    )
    wall = time.perf_counter() - started
    produced = sum(r.completion_tokens for r in results)
    return {
        "requests": n,
        "tokens": produced,
        "wall_s": wall,
        "aggregate_tok_s": produced / wall,
        "ttft_p50_s": median([r.queued_s + r.time_to_first_token_s for r in results]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--parallel",
        type=int,
        nargs="+",
        default=[1, 4],
        help="engine batch widths to compare (1 = one sequence at a time)",
    )
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--engine-tokens", type=int, default=64, help="tokens per request in the engine table")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds before a level counts as hung")
    parser.add_argument(
        "--engine-only",
        action="store_true",
        help="skip the /v1/agent levels (e.g. for a SYNTHETIC model that writes noise)",
    )
    parser.add_argument("--name", default="concurrency", help="results/NAME.json")
    args = parser.parse_args()
    model = args.model or embedded_model_path()
    levels, engine_rows = [], []
    for parallel in args.parallel:
        engine = LlamaEngine(
            model, model_id="bench", ctx_size=4096, threads=args.threads, max_queue=args.max_queue, parallel=parallel
        )
        for n in sorted({1, *[s for s in args.sessions if s <= 8]}):
            engine_rows.append({"parallel": parallel} | asyncio.run(engine_level(engine, n, args.engine_tokens)))
        if args.engine_only:
            engine.close()
            continue
        settings = Settings(sandbox_pool_size=4, max_sessions=64)
        with LoopbackServer(create_app(settings, engine)) as server:
            for n in args.sessions:
                levels.append(
                    {"parallel": parallel} | asyncio.run(run_level(server.url, n, args.max_tokens, args.deadline))
                )
    _add_ratios(levels, "sessions")
    _add_ratios(engine_rows, "requests")
    rows = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in level.items()} for level in levels]
    if rows:
        print_table(rows, list(rows[0]), title="concurrency: concurrent /v1/agent sessions (stream)")
    erows = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()} for row in engine_rows]
    print_table(erows, list(erows[0]), title=f"engine only: N greedy completions of {args.engine_tokens} tokens")
    path = write_result(
        args.name,
        {"levels": levels, "engine": engine_rows, "settings": vars(args) | {"model": str(model)}},
        model=model,
    )
    print(f"wrote {path}")


def _add_ratios(rows: list[dict[str, Any]], key: str) -> None:
    """aggregate tok/s of each row over the parallel=1 row at the same load."""
    base = {row[key]: row["aggregate_tok_s"] for row in rows if row["parallel"] == 1}
    for row in rows:
        reference = base.get(row[key])
        row["vs_parallel_1"] = row["aggregate_tok_s"] / reference if reference else None


if __name__ == "__main__":
    main()
