"""Time per agent turn spent outside token generation.

A scripted model that produces its turns instantly stands in for the model, so what is
left is ours: prompt rendering, the phased turn's engine round trips, parsing, the
sandbox round trip (real worker, full isolation), observation rendering and HTTP/SSE.
Each request runs ``--turns`` execute turns and a solution through real uvicorn.
Target (issue 8): median <= 5 ms per turn.

    python -m benchmarks.agent_overhead [--turns 10] [--reps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import httpx

from benchmarks.common import median, print_table, write_result
from benchmarks.serving import LoopbackServer
from models.engine_scripted import ScriptedEngine
from server.app import create_app
from server.settings import Settings


def scripted_turns(turns: int) -> list[str]:
    body = [f"Step {k}: update the total.\n<execute>\ntotal = {k} + 1\n</execute>" for k in range(turns - 1)]
    return [*body, "Done.\n<solution>ok</solution>"]


def one_request(client: httpx.Client, engine: ScriptedEngine, turns: int, stream: bool) -> dict[str, Any]:
    engine.enqueue(*scripted_turns(turns))
    body = {"model": "scripted", "messages": [{"role": "user", "content": "count"}],
            "max_turns": turns, "stream": stream}
    started = time.perf_counter()
    if stream:
        with client.stream("POST", "/v1/agent", json=body) as response:
            for _ in response.iter_lines():
                pass
        session_id = None
    else:
        reply = client.post("/v1/agent", json=body).json()
        session_id = reply["agent"]["session_id"]
    wall = time.perf_counter() - started
    steps = []
    if session_id:
        steps = client.get(f"/v1/agent/sessions/{session_id}").json()["steps"]
        client.delete(f"/v1/agent/sessions/{session_id}")
    sandbox_s = sum(s["timings"].get("execution_s", 0.0) for s in steps)
    return {"wall_s": wall, "sandbox_s": sandbox_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    engine = ScriptedEngine()
    settings = Settings(sandbox_pool_size=2, max_sessions=64)
    rows, results = [], {}
    with LoopbackServer(create_app(settings, engine)) as server, httpx.Client(
        base_url=server.url, timeout=60
    ) as client:
        one_request(client, engine, args.turns, stream=False)  # warm up
        for stream in (False, True):
            runs = [one_request(client, engine, args.turns, stream) for _ in range(args.reps)]
            per_turn = [r["wall_s"] / args.turns * 1000 for r in runs]
            name = "stream" if stream else "non-stream"
            results[name] = {"per_turn_ms": per_turn}
            row = {"mode": name, "median ms/turn": round(median(per_turn), 2),
                   "p90 ms/turn": round(statistics.quantiles(per_turn, n=10)[-1], 2)}
            if not stream:
                sandbox = [r["sandbox_s"] / (args.turns - 1) * 1000 for r in runs]
                results[name]["sandbox_ms_per_execution"] = sandbox
                row["sandbox ms/exec (median)"] = round(median(sandbox), 2)
            rows.append(row)
    columns = ["mode", "median ms/turn", "p90 ms/turn", "sandbox ms/exec (median)"]
    title = f"agent_overhead: {args.turns} turns per request, scripted model, real sandbox"
    print_table(rows, columns, title=title)
    path = write_result("agent_overhead", {"results": results, "settings": vars(args),
                                            "target_ms_per_turn": 5.0})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
