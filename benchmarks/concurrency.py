"""Concurrent agent sessions against one server: throughput, TTFT, and queue behaviour.

N clients each run one streaming ``/v1/agent`` task at the same time through real uvicorn
on the real model. Reported per N: aggregate completion tok/s, p50/p99 time to the first
streamed token, how many requests the bounded queue refused (503, answered at once), and
that nothing hung (every request ended within the deadline). The engine decodes one
sequence at a time (one llama.cpp context), so aggregate tok/s should stay flat with N
while TTFT grows with the queue: that is the baseline batching (issue 8) must beat.

    python -m benchmarks.concurrency [--sessions 1 4 16] [--max-queue 8] [--threads 1]
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
from benchmarks.serving import LoopbackServer
from models.engine import LlamaEngine
from server.app import create_app
from server.settings import Settings

TASK = "Compute the sum of the first {n} odd numbers with Python."


async def one_session(client: httpx.AsyncClient, n: int, max_tokens: int) -> dict[str, Any]:
    body = {"model": "bench", "messages": [{"role": "user", "content": TASK.format(n=n + 3)}],
            "stream": True, "max_turns": 2, "max_tokens": max_tokens, "temperature": 0}
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
    return {"status": 200, "wall_s": time.perf_counter() - started, "ttft_s": first,
            "completion_tokens": (usage or {}).get("completion_tokens", 0)}


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
        "sessions": sessions, "ok": len(ok), "refused_503": len(refused),
        "max_503_latency_s": max((r["wall_s"] for r in refused), default=0.0),
        "aggregate_tok_s": tokens / wall if wall else 0.0, "wall_s": wall,
        "ttft_p50_s": median(ttfts) if ttfts else None,
        "ttft_p99_s": ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))] if ttfts else None,
        "ttft_stdev_s": statistics.pstdev(ttfts) if len(ttfts) > 1 else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds before a level counts as hung")
    args = parser.parse_args()
    model = args.model or embedded_model_path()
    engine = LlamaEngine(model, model_id="bench", ctx_size=4096, threads=args.threads, max_queue=args.max_queue)
    settings = Settings(sandbox_pool_size=4, max_sessions=64)
    levels = []
    with LoopbackServer(create_app(settings, engine)) as server:
        for n in args.sessions:
            levels.append(asyncio.run(run_level(server.url, n, args.max_tokens, args.deadline)))
    rows = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in level.items()} for level in levels]
    print_table(rows, list(rows[0]), title="concurrency: concurrent /v1/agent sessions (stream)")
    path = write_result("concurrency", {"levels": levels, "settings": vars(args) | {"model": str(model)}},
                        model=model)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
