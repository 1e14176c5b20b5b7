"""What the records store costs: per step, to the token path, and on disk (issue 36).

Three figures, each against a baseline in the same run:

* **a step's write**: ``AgentRunRecords.step`` with real steps (read from an
  ``agent_quality`` results file: thought, code, output, timings as the agent made them),
  on a file store against the in-memory one; the time the *caller* spends (what the
  event loop pays: a queue put) and the time until the write is committed on the store's
  thread (fsync-free in WAL mode, so a kill loses nothing committed), as medians and p99s.
* **decode speed while the store writes**: the same greedy generations on the real engine
  (the embedded SmolLM2 unless ``--model``), alternating rounds without writes and rounds
  with a thread recording a step every ``--step-interval-ms`` (far more often than an agent
  makes steps): decode tok/s of each, and their ratio.
* **size per run**: the file's bytes (log included, after a checkpoint) over the runs
  recorded, each run its steps, request and outcome.

Run: ``.venv/bin/python -m benchmarks.store_cost`` (``--help``); it prints a table and writes
``benchmarks/results/store_cost.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import embedded_model_path, median, print_table, write_result
from server.store import Store

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_STEPS = RESULTS / "agent_quality_issue27_final_server.json"
PROMPT = "<|im_start|>user\nWrite a short story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n"


def real_steps(path: Path) -> list[list[dict[str, Any]]]:
    """Each run's steps from an agent_quality results file (runs with at least one step)."""
    runs = json.loads(path.read_text())["runs"]
    return [run["steps"] for run in runs if run.get("steps") and run["arm"] != "plain"]


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def time_steps(store: Store, runs: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Record every run; caller time per step, and time until each step is committed."""
    records = store.agent_runs
    caller, committed = [], []
    for number, steps in enumerate(runs):
        run_id = f"run_{number}"
        records.begin(run_id, f"sess_{number}", {"messages": [{"role": "user", "content": "task"}]})
        for index, step in enumerate(steps):
            started = time.perf_counter()
            records.step(run_id, index, step)
            caller.append(time.perf_counter() - started)
            store.database.call_now(lambda _db: None)  # queued behind the step: it is committed now
            committed.append(time.perf_counter() - started)
        records.end(run_id, {"finish_reason": "solution", "turns": len(steps)})
    store.database.call_now(lambda _db: None)
    return {
        "steps": len(caller),
        "caller_median_ms": median(caller) * 1e3,
        "caller_p99_ms": p99(caller) * 1e3,
        "committed_median_ms": median(committed) * 1e3,
        "committed_p99_ms": p99(committed) * 1e3,
    }


def decode_rounds(model: Path, rounds: int, tokens: int, threads: int | None, store: Store, interval_s: float,
                  step: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Alternating rounds: plain decoding, then decoding while a thread records steps."""
    from models.engine.api import GenerationRequest
    from models.engine.llama.engine import LlamaEngine

    engine = LlamaEngine(model, model_id="bench", ctx_size=2048, threads=threads, max_queue=2)

    async def generate() -> float:
        handle = engine.submit(GenerationRequest(PROMPT, max_tokens=tokens, temperature=0))
        async for _ in handle.stream():
            pass
        return handle.result.decode_tokens_per_s

    speeds: dict[str, list[float]] = {"no store writes": [], "store writing": []}
    written = 0
    try:
        asyncio.run(generate())  # warm-up
        for _ in range(rounds):
            speeds["no store writes"].append(asyncio.run(generate()))
            stop = threading.Event()

            def write_steps(stop: threading.Event = stop) -> None:
                nonlocal written
                while not stop.wait(interval_s):
                    store.agent_runs.step("decode_run", written, step)
                    written += 1

            store.agent_runs.begin("decode_run", "sess_decode", {})
            writer = threading.Thread(target=write_steps)
            writer.start()
            speeds["store writing"].append(asyncio.run(generate()))
            stop.set()
            writer.join()
    finally:
        engine.close()
    plain, writing = median(speeds["no store writes"]), median(speeds["store writing"])
    return {"tok_s": {k: [round(v, 1) for v in vs] for k, vs in speeds.items()}, "plain_tok_s": plain,
            "writing_tok_s": writing, "ratio": writing / plain, "steps_written": written}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps-from", type=Path, default=DEFAULT_STEPS, help="agent_quality JSON to take real steps from"
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="GGUF for the decode rounds (default: embedded SmolLM2)"
    )
    parser.add_argument("--rounds", type=int, default=6, help="decode rounds of each kind (default 6)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens a generation (default 256)")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (default 1)")
    parser.add_argument("--step-interval-ms", type=float, default=20.0, help="a step written every N ms while decoding")
    args = parser.parse_args(argv)

    runs = real_steps(args.steps_from)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in (("memory", None), ("file", Path(tmp) / "store.db")):
            store = Store.open(path, max_age_s=86400, max_bytes=1 << 34)
            figures = time_steps(store, runs)
            store.database.call_now(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
            figures["bytes_per_run"] = store.database.size_bytes() / len(runs) if path else 0.0
            store.close()
            results[name] = figures
            rows.append({"store": name, **{k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}})
        print_table(rows, ["store", "steps", "caller_median_ms", "caller_p99_ms", "committed_median_ms",
                           "committed_p99_ms", "bytes_per_run"], title="a step's write, real steps")  # fmt: skip
        model = args.model or embedded_model_path()
        store = Store.open(Path(tmp) / "decode.db", max_age_s=86400, max_bytes=1 << 34)
        step = max((s for steps in runs for s in steps), key=lambda s: len(json.dumps(s)))
        decode = decode_rounds(model, args.rounds, args.tokens, args.threads, store, args.step_interval_ms / 1e3, step)
        store.close()
    print_table(
        [
            {
                "rounds": args.rounds,
                "plain tok/s": round(decode["plain_tok_s"], 1),
                "writing tok/s": round(decode["writing_tok_s"], 1),
                "ratio": round(decode["ratio"], 3),
                "steps written": decode["steps_written"],
            }
        ],  # fmt: skip
        ["rounds", "plain tok/s", "writing tok/s", "ratio", "steps written"],
        title=f"decode while a step is written every {args.step_interval_ms:g} ms (largest real step)",
    )
    payload = {
        "runs": len(runs),
        "step_writes": results,
        "decode": decode,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    print(f"wrote {write_result('store_cost', payload, model=model)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
