"""Streamed decode speed and time to first token of one OpenAI-compatible server.

The GPU check (``benchmarks/gpu/run.sh``) points this at upstream llama-server and at our
``codeact-server serve`` in turn, on the same model file, and compares the two as ratios
(``benchmarks.gpu.summary``). It measures what a client sees over HTTP:

- **single**: one stream at a time, ``reps`` times. TTFT is request start to the first
  content delta; decode tok/s is ``(completion tokens - 1) / (last delta - first delta)``, so
  it leaves out the prefill and the request overhead that TTFT already shows.
- **long prompt**: single streams whose prompt is about ``long_chars`` characters, for a TTFT
  that includes a real prefill. Sized in characters because the synthetic model's vocabulary
  is mostly single characters (about 0.8 tokens per character; a real Mistral vocabulary is
  nearer 0.25): 1,800 characters are about 1,500 tokens there, inside llama-server's
  2,048-token slot at ``-c 8192 -np 4``.
- **burst**: ``concurrency`` streams started together, ``bursts`` times; aggregate tok/s is
  all completion tokens over the burst's wall time (what ``--parallel``/``-np`` batching buys).

Every prompt starts with a tag unique to the request, so neither server can reuse a cached
prefix from an earlier request. Every request says ``Connection: close``: llama-server's HTTP
library closed a kept-alive connection after a streamed answer, and the next request on it
failed with "Server disconnected without sending a response" (seen in the CPU dry run), so no
connection is reused, for either server. Results are rewritten to the output file after each request:
a run killed by a timeout still leaves what it measured.

It needs only httpx (the project's own dependency), not the project: run it as
``python -m benchmarks.gpu.stream_bench run NAME BASE_URL OUT.json [options]``, or
``... wait BASE_URL`` to block until a server's ``/health`` answers 200.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

STORY_PROMPT = "Write a long story about a robot who learns to cook."
#: One connection per request: see the module docstring.
CLOSE = {"Connection": "close"}
FILLER = "The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill. "


@dataclass
class StreamResult:
    """One streamed completion as the client saw it (seconds from the request's start)."""

    ttft_s: float | None
    tokens: int
    chunks: int
    decode_tps: float | None
    wall_s: float
    prompt_tokens: int | None = None


@dataclass
class BurstResult:
    """``concurrency`` streams started together."""

    wall_s: float
    tokens: int
    agg_tps: float
    streams: list[StreamResult] = field(default_factory=list)


@dataclass
class BenchSettings:
    reps: int = 5
    tokens: int = 128
    concurrency: int = 4
    bursts: int = 2
    long_reps: int = 3
    long_chars: int = 1800
    timeout_s: float = 120.0


def decode_rate(tokens: int, first: float | None, last: float | None) -> float | None:
    """Tokens per second between the first and the last content delta (None when unmeasurable)."""
    if first is None or last is None or last <= first or tokens < 2:
        return None
    return (tokens - 1) / (last - first)


def served_model(client: httpx.Client, base: str) -> str:
    """The first model id ``/v1/models`` lists: each server names its model its own way."""
    response = client.get(base + "/v1/models", headers=CLOSE)
    response.raise_for_status()
    models = response.json().get("data") or []
    if not models:
        raise RuntimeError(f"{base}/v1/models lists no model")
    return str(models[0]["id"])


def stream_once(client: httpx.Client, base: str, model: str, prompt: str, max_tokens: int) -> StreamResult:
    """One ``stream: true`` chat completion at temperature 0, timed per content delta."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = last = None
    chunks = 0
    usage: dict[str, Any] = {}
    with client.stream("POST", base + "/v1/chat/completions", json=body, headers=CLOSE) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: ") :])
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    chunks += 1
    tokens = int(usage.get("completion_tokens") or chunks)
    return StreamResult(
        ttft_s=None if first is None else first - started,
        tokens=tokens,
        chunks=chunks,
        decode_tps=decode_rate(tokens, first, last),
        wall_s=time.perf_counter() - started,
        prompt_tokens=usage.get("prompt_tokens"),
    )


def long_prompt(tag: str, chars: int) -> str:
    """A prompt of about ``chars`` characters, unique from its first word."""
    head = f"[{tag}] Summarise this text in one sentence.\n\n"
    body = FILLER * (max(0, chars - len(head)) // len(FILLER) + 1)
    return head + body[: max(0, chars - len(head))]


def burst(run_one: Callable[[int], StreamResult], concurrency: int) -> BurstResult:
    """Start ``concurrency`` streams at once (one thread each) and time the whole burst."""
    results: list[StreamResult | None] = [None] * concurrency
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            results[index] = run_one(index)
        except BaseException as exc:  # reported after join: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} of {concurrency} burst streams failed: {errors[0]!r}") from errors[0]
    done = [r for r in results if r is not None]
    tokens = sum(r.tokens for r in done)
    return BurstResult(wall_s=wall, tokens=tokens, agg_tps=tokens / wall if wall > 0 else 0.0, streams=done)


def summarise(single: list[StreamResult], long: list[StreamResult], bursts: list[BurstResult]) -> dict[str, Any]:
    """Medians of the single streams, the best burst: the figures the summary compares."""

    def med(values: list[float | None]) -> float | None:
        data = [v for v in values if v is not None]
        return statistics.median(data) if data else None

    return {
        "decode_tps_median": med([r.decode_tps for r in single]),
        "ttft_s_median": med([r.ttft_s for r in single]),
        "ttft_long_s_median": med([r.ttft_s for r in long]),
        "long_prompt_tokens": med([r.prompt_tokens for r in long]),
        "tokens_median": med([r.tokens for r in single]),
        "agg_tps_best": max((b.agg_tps for b in bursts), default=None),
    }


def run_bench(
    name: str,
    base: str,
    out: Path,
    settings: BenchSettings,
    *,
    quant: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Warm up, then single streams, long-prompt streams and bursts; ``out`` holds the results so far."""
    document: dict[str, Any] = {
        "name": name,
        "base_url": base,
        "quant": quant,
        "settings": asdict(settings),
        "complete": False,
    }
    single: list[StreamResult] = []
    long: list[StreamResult] = []
    bursts: list[BurstResult] = []

    def save() -> None:
        document.update(
            single=[asdict(r) for r in single],
            long_prompt=[asdict(r) for r in long],
            burst=[asdict(b) for b in bursts],
            **summarise(single, long, bursts),
        )
        out.write_text(json.dumps(document, indent=1) + "\n")

    with httpx.Client(timeout=settings.timeout_s) as client:
        model = served_model(client, base)
        document["model"] = model
        stream_once(client, base, model, f"[{name}-warm] {STORY_PROMPT}", 16)
        for i in range(settings.reps):
            single.append(stream_once(client, base, model, f"[{name}-s{i}] {STORY_PROMPT}", settings.tokens))
            save()
            log(f"{name} single {i}: {_brief(single[-1])}")
        for i in range(settings.long_reps):
            prompt = long_prompt(f"{name}-l{i}", settings.long_chars)
            long.append(stream_once(client, base, model, prompt, 16))
            save()
            log(f"{name} long prompt {i}: {_brief(long[-1])}")
    for b in range(settings.bursts):
        # One client per stream: a shared pool would serialise nothing, but separate clients
        # are what separate users are.
        def one(k: int, b: int = b) -> StreamResult:
            with httpx.Client(timeout=settings.timeout_s) as client:
                return stream_once(client, base, model, f"[{name}-b{b}-{k}] {STORY_PROMPT}", settings.tokens)

        bursts.append(burst(one, settings.concurrency))
        save()
        log(f"{name} burst {b} x{settings.concurrency}: {bursts[-1].agg_tps:.1f} tok/s in {bursts[-1].wall_s:.2f} s")
    document["complete"] = True
    save()
    return document


def _brief(result: StreamResult) -> str:
    ttft = "-" if result.ttft_s is None else f"{result.ttft_s * 1000:.0f} ms"
    rate = "-" if result.decode_tps is None else f"{result.decode_tps:.1f} tok/s"
    return f"ttft {ttft}, decode {rate}, {result.tokens} tokens, prompt {result.prompt_tokens}"


def wait_healthy(base: str, timeout_s: float, is_alive: Callable[[], bool] = lambda: True) -> bool:
    """Poll ``base/health`` until it answers 200 (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and is_alive():
        try:
            if httpx.get(base + "/health", timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.stream_bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="measure one server")
    run.add_argument("name", help="label in the results, e.g. llama-server/fa-off")
    run.add_argument("base_url", help="e.g. http://127.0.0.1:8091")
    run.add_argument("out", type=Path, help="JSON file, rewritten after every request")
    run.add_argument("--quant", help="the model file's quant, recorded for the summary")
    defaults = BenchSettings()
    for key, value in asdict(defaults).items():
        run.add_argument("--" + key.replace("_", "-"), type=type(value), default=value, help=f"default {value}")
    wait = sub.add_parser("wait", help="wait until BASE_URL/health answers 200; exit 1 on timeout")
    wait.add_argument("base_url")
    wait.add_argument("--timeout", type=float, default=180.0)
    wait.add_argument("--pid", type=int, help="give up early when this process has exited")
    args = parser.parse_args(argv)
    if args.command == "wait":
        alive = (lambda: Path(f"/proc/{args.pid}").exists()) if args.pid else (lambda: True)
        return 0 if wait_healthy(args.base_url, args.timeout, alive) else 1
    settings = BenchSettings(**{k: getattr(args, k) for k in asdict(defaults)})
    document = run_bench(
        args.name, args.base_url, args.out, settings, quant=args.quant, log=lambda line: print(line, flush=True)
    )
    print(json.dumps({k: document[k] for k in ("name", *summarise([], [], [])) if k in document}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
