"""Time per agent turn spent outside token generation.

A scripted model that produces its turns instantly stands in for the model, so what is
left is ours: prompt rendering, the phased turn's engine round trips, parsing, the
sandbox round trip (real worker, full isolation), observation rendering and HTTP/SSE.
Each request opens a new session and runs ``--turns`` turns (execute turns, then a
solution) through real uvicorn; its whole wall time, from sending the request to the
last byte of the answer, divided by the turns, is the figure. Target (issue 8): median
<= 5 ms per turn.

The HTTP client runs in its own process, as every real client does (``--client thread``
puts it on a thread of the server's process instead, where its parsing of each streamed
event holds the GIL the server needs). The scripted model plays the turn that matches
how many assistant turns the prompt already holds, so the client needs no access to it.
Between requests, untimed: the session's steps are read, the session is deleted, and the
benchmark waits for the sandbox pool to hold its pre-started workers again (see
``wait_for_pool``).

    python -m benchmarks.agent_overhead [--turns 10] [--reps 20] [--client process|thread]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import httpx

from benchmarks.common import median, print_table, write_result
from models.engine.chat_format import generation_prompt
from models.engine.scripted import Responder, ScriptedEngine
from server.api.app import create_app
from server.api.loopback import LoopbackServer
from server.settings import Settings

POOL_SIZE = 2
POOL_WAIT_S = 30.0
WARMUP_REQUESTS = 2


def scripted_turns(turns: int) -> list[str]:
    body = [f"Step {k}: update the total.\n<execute>\ntotal = {k} + 1\n</execute>" for k in range(turns - 1)]
    return [*body, "Done.\n<solution>ok</solution>"]


def script_responder(turns: int) -> Responder:
    """Turn k of ``scripted_turns`` for a prompt that already holds k assistant turns."""
    script = scripted_turns(turns)
    opener = generation_prompt()

    def respond(prompt: str) -> str:
        return script[min(prompt.count(opener) - 1, len(script) - 1)]

    return respond


def wait_for_pool(client: httpx.Client, size: int) -> float:
    """Wait (untimed) until the sandbox pool holds ``size`` pre-started workers again.

    Each request takes a fresh session, and the pool replaces the worker it handed out by
    starting a new Python under bubblewrap in the background (~90 ms on these 2 cores).
    In use that happens while the model generates; back-to-back scripted requests would
    instead overlap it with the next measured request (or find the pool empty), charging
    a per-session start-up to per-turn figures. Returns the seconds waited.
    """
    started = time.perf_counter()
    deadline = started + POOL_WAIT_S
    while client.get("/health").json()["sandbox_pool_idle"] < size:
        if time.perf_counter() > deadline:
            raise SystemExit(f"the sandbox pool did not refill within {POOL_WAIT_S:.0f} s")
        time.sleep(0.005)
    return time.perf_counter() - started


def one_request(client: httpx.Client, turns: int, stream: bool) -> dict[str, Any]:
    """One timed agent request (new session, ``turns`` turns); the session is deleted after."""
    body = {
        "model": "scripted",
        "messages": [{"role": "user", "content": "count"}],
        "max_turns": turns,
        "stream": stream,
    }
    session_id = None
    started = time.perf_counter()
    if stream:
        with client.stream("POST", "/v1/agent", json=body) as response:
            for line in response.iter_lines():
                if session_id is None and line.startswith("data: {"):
                    session_id = json.loads(line[len("data: ") :])["agent"]["session_id"]
    else:
        reply = client.post("/v1/agent", json=body).json()
        session_id = reply["agent"]["session_id"]
    wall = time.perf_counter() - started
    # Untimed: the steps (to check the run and for the sandbox figure), then the session goes.
    steps = client.get(f"/v1/agent/sessions/{session_id}").json()["steps"]
    client.delete(f"/v1/agent/sessions/{session_id}")
    if len(steps) != turns or steps[-1]["action"]["type"] != "solution":
        raise SystemExit(f"the scripted run did not play out: {len(steps)} steps, last {steps[-1:]}")
    sandbox_s = sum(s["timings"].get("execution_s", 0.0) for s in steps)
    return {"wall_s": wall, "sandbox_s": sandbox_s}


def run_client(url: str, turns: int, reps: int) -> dict[str, list[dict[str, Any]]]:
    """Warm up, then ``reps`` timed requests per mode (runs in the client's process)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(WARMUP_REQUESTS):
            wait_for_pool(client, POOL_SIZE)
            one_request(client, turns, stream=False)
        for stream in (False, True):
            mode = runs.setdefault("stream" if stream else "non-stream", [])
            for _ in range(reps):
                wait_for_pool(client, POOL_SIZE)
                mode.append(one_request(client, turns, stream))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--client", choices=("process", "thread"), default="process")
    args = parser.parse_args()
    engine = ScriptedEngine(responder=script_responder(args.turns))
    settings = Settings(sandbox_pool_size=POOL_SIZE, max_sessions=64)
    with LoopbackServer(create_app(settings, engine)) as server:
        if args.client == "thread":
            runs = run_client(server.url, args.turns, args.reps)
        else:
            spawn = multiprocessing.get_context("spawn")  # never fork a process with threads
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                runs = pool.submit(run_client, server.url, args.turns, args.reps).result()
    rows, results = [], {}
    for name, mode_runs in runs.items():
        per_turn = [r["wall_s"] / args.turns * 1000 for r in mode_runs]
        sandbox = [r["sandbox_s"] / (args.turns - 1) * 1000 for r in mode_runs]
        results[name] = {"per_turn_ms": per_turn, "sandbox_ms_per_execution": sandbox}
        rows.append(
            {
                "mode": name,
                "median ms/turn": round(median(per_turn), 2),
                "p90 ms/turn": round(statistics.quantiles(per_turn, n=10)[-1], 2),
                "sandbox ms/exec (median)": round(median(sandbox), 2),
            }
        )
    columns = ["mode", "median ms/turn", "p90 ms/turn", "sandbox ms/exec (median)"]
    title = f"agent_overhead: {args.turns} turns per request, scripted model, real sandbox, client in a {args.client}"
    print_table(rows, columns, title=title)
    path = write_result("agent_overhead", {"results": results, "settings": vars(args), "target_ms_per_turn": 5.0})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
