"""Per-token cost outside ``llama_decode``: where a decode step's time goes besides the model.

Every variant here decodes the same greedy continuations of the same prompts on the same
GGUF, in this process, so that each call of ``llama_decode`` can be timed where it happens
(``llama_cpp.llama_decode`` is wrapped; the wrapper costs well under a microsecond). For the
decode phase of each request the time between the end of one ``llama_decode`` and the start
of the next, on the thread that calls it, is time the model did not run: sampling, building
the batch, detokenizing, stop-string matching, handing text to the event loop, and any wait
for the GIL while another thread of this process runs Python. Variants, interleaved request
by request:

- ``bare``: the least a Python caller can do per token: greedy-sample the last row, put one
  token in a batch, decode (low-level ``llama_cpp`` calls, no llama-cpp-python ``Llama``).
- ``engine``: ``LlamaEngine.submit`` and ``handle.stream()`` on an asyncio loop, no HTTP.
- ``http curl``: ``POST /v1/chat/completions`` with ``stream: true`` to our app on uvicorn
  in this process (``server.api.loopback.LoopbackServer``), read by ``curl -N`` (a separate
  process, as a real client is).
- ``http httpx``: the same, read by an ``httpx`` client inside this process (how
  ``benchmarks.throughput --inproc`` and issue 8 measured ours): its JSON parsing competes
  for the GIL with the engine thread.
- ``engine every token``: ``engine`` with ``--stream-interval-ms 0`` (text handed to the
  event loop at every token, through ``models.engine.wakeup``, which keeps the GIL).
- ``... before``: ``engine`` and ``http curl`` as they were before issue 18: every token
  handed over by ``loop.call_soon_threadsafe`` (whose ``send`` drops the GIL).
The other variants run at the engine's default ``--stream-interval-ms``.

It prints the mean and median gap per token (microseconds), the mean ``llama_decode`` time,
their sum as the time per token, and for ``engine`` which of our functions the gap is made
of (their own timers; nested calls are counted inside their caller too).

Run: ``.venv/bin/python -m benchmarks.token_overhead --threads 1 --reps 3 --tokens 128``
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import shutil
import statistics
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llama_cpp

from benchmarks.common import embedded_model_path, print_table, write_result
from benchmarks.decode_loop import BareLoop
from benchmarks.throughput import TASKS, messages
from models.engine import runner as runner_module
from models.engine.api import GenerationRequest
from models.engine.chat_format import CHATML_STOP, render_chatml
from models.engine.generated_text import GeneratedText
from models.engine.llama import batch as batch_module
from models.engine.llama import slots as slots_module
from models.engine.llama.engine import LlamaEngine
from models.engine.llama.sampler import TokenSampler
from models.engine.runner import QueuedGeneration
from server.api.app import create_app
from server.api.loopback import LoopbackServer
from server.settings import Settings

MODEL_NAME = "bench"


class DecodeClock:
    """Wraps ``llama_cpp.llama_decode``: start and end of every call, per calling thread."""

    def __init__(self) -> None:
        self.calls: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
        self._real = llama_cpp.llama_decode

        def timed(ctx: Any, batch: Any) -> int:
            start = time.perf_counter()
            status = self._real(ctx, batch)
            self.calls[threading.get_ident()].append((batch.n_tokens, start, time.perf_counter()))
            return status

        llama_cpp.llama_decode = timed

    def take(self) -> list[tuple[int, float, float]]:
        """All calls since the last ``take`` (from whichever thread made them), in time order."""
        calls = sorted((c for per_thread in self.calls.values() for c in per_thread), key=lambda c: c[1])
        self.calls.clear()
        return calls


def decode_phase(calls: list[tuple[int, float, float]]) -> tuple[list[float], list[float]]:
    """Gaps between one-token decodes, and those decodes' durations (the prompt's batch excluded)."""
    steps = [c for c in calls if c[0] == 1]
    gaps = [b[1] - a[2] for a, b in zip(steps, steps[1:], strict=False)]
    return gaps, [c[2] - c[1] for c in steps]


class Timers:
    """Time spent inside chosen functions, wrapped on their classes (for the ``engine`` breakdown)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self.enabled = False

    def wrap(self, owner: Any, name: str, label: str) -> None:
        real: Callable[..., Any] = getattr(owner, name)

        @functools.wraps(real)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.enabled:
                return real(*args, **kwargs)
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.total[label] += time.perf_counter() - start
                self.count[label] += 1

        setattr(owner, name, timed)


class ThreadsafeWaker:
    """The hand-off before ``models.engine.wakeup``: ``call_soon_threadsafe`` (``send`` drops the GIL)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.call = loop.call_soon_threadsafe


def with_handoff(
    engine: LlamaEngine, run: Callable[[list[dict[str, str]]], object], *, threadsafe: bool, interval_ms: float
) -> Callable[[list[dict[str, str]]], object]:
    """``run`` with the owner thread's hand-off to the event loop chosen for its requests."""
    real = runner_module.loop_waker

    def variant(msgs: list[dict[str, str]]) -> object:
        default = engine._wake_interval_s  # noqa: SLF001 - a benchmark switching one knob per request
        runner_module.loop_waker = ThreadsafeWaker if threadsafe else real  # type: ignore[assignment]
        engine._wake_interval_s = interval_ms / 1000  # noqa: SLF001
        try:
            return run(msgs)
        finally:
            runner_module.loop_waker = real
            engine._wake_interval_s = default  # noqa: SLF001

    return variant


def engine_breakdown_timers() -> Timers:
    timers = Timers()
    timers.wrap(TokenSampler, "sample", "sample (llama_sampler_sample)")
    timers.wrap(slots_module.ActiveGeneration, "take", "take (all per-token text work)")
    timers.wrap(LlamaEngine, "_piece", "  token_to_piece")
    timers.wrap(GeneratedText, "feed", "  stop matching + emit")
    timers.wrap(QueuedGeneration, "emit", "    emit (hand-off to the event loop)")
    timers.wrap(batch_module.BatchScheduler, "_fill_batch", "fill batch")
    timers.wrap(batch_module.BatchScheduler, "_make_room", "make room")
    return timers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: the embedded SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per request")
    parser.add_argument("--reps", type=int, default=3, help="rounds over the prompts")
    parser.add_argument("--flash-attn", default="auto", choices=("auto", "on", "off"), help="for bare and engine")
    parser.add_argument("--name", default="token_overhead", help="result file name")
    args = parser.parse_args(argv)
    model = args.model or embedded_model_path()

    clock = DecodeClock()
    timers = engine_breakdown_timers()
    bare = BareLoop(model, args.threads, args.ctx, flash_attn=args.flash_attn)
    engine = LlamaEngine(
        model, model_id=MODEL_NAME, ctx_size=args.ctx, threads=args.threads, n_gpu_layers=0, flash_attn=args.flash_attn
    )
    app = create_app(Settings(sandbox_pool_size=0), engine)
    curl = shutil.which("curl")
    if curl is None:
        print("http curl: skipped, curl is not installed")

    import httpx

    client = httpx.Client(timeout=600)

    async def via_engine(prompt: str) -> None:
        request = GenerationRequest(prompt=prompt, max_tokens=args.tokens, temperature=0.0, stop=CHATML_STOP)
        handle = engine.submit(request)
        async for _ in handle.stream():
            pass

    def body(msgs: list[dict[str, str]]) -> dict[str, Any]:
        return {"model": MODEL_NAME, "messages": msgs, "max_tokens": args.tokens, "temperature": 0.0, "stream": True}

    gaps: dict[str, list[float]] = defaultdict(list)
    decodes: dict[str, list[float]] = defaultdict(list)
    breakdown_tokens = 0
    with LoopbackServer(app) as server:
        url = f"{server.url}/v1/chat/completions"

        def via_curl(msgs: list[dict[str, str]]) -> None:
            import json

            subprocess.run([curl, "-sN", url, "-H", "content-type: application/json", "-d", json.dumps(body(msgs))],
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip

        def via_httpx(msgs: list[dict[str, str]]) -> None:
            with client.stream("POST", url, json=body(msgs)) as response:
                for line in response.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        import json

                        json.loads(line[6:])

        def engine_run(m: list[dict[str, str]]) -> None:
            asyncio.run(via_engine(render_chatml(m)))

        variants: dict[str, Callable[[list[dict[str, str]]], object]] = {
            "bare": lambda m: bare.run(render_chatml(m), args.tokens),
            "engine": engine_run,
            "engine every token": with_handoff(engine, engine_run, threadsafe=False, interval_ms=0),
            "engine before": with_handoff(engine, engine_run, threadsafe=True, interval_ms=0),
            "http httpx": via_httpx,
        }
        if curl is not None:
            variants["http curl"] = via_curl
            variants["http curl before"] = with_handoff(engine, via_curl, threadsafe=True, interval_ms=0)
        for variant in variants.values():
            variant(messages("Say hi.", -1))
        clock.take()
        nonce = 0
        for _ in range(args.reps):
            for task in TASKS:
                for name, variant in variants.items():
                    nonce += 1
                    timers.enabled = name == "engine"
                    variant(messages(task, nonce))
                    timers.enabled = False
                    g, d = decode_phase(clock.take())
                    gaps[name] += g
                    decodes[name] += d
                    if name == "engine":
                        breakdown_tokens += len(d)
    engine.close()

    rows = []
    bare_gap = statistics.fmean(gaps["bare"])
    for name in gaps:
        mean_gap, mean_decode = statistics.fmean(gaps[name]), statistics.fmean(decodes[name])
        rows.append({
            "variant": name,
            "tokens": len(decodes[name]),
            "gap mean us": mean_gap * 1e6,
            "gap median us": statistics.median(gaps[name]) * 1e6,
            "gap p90 us": statistics.quantiles(gaps[name], n=10)[-1] * 1e6,
            "over bare us": (mean_gap - bare_gap) * 1e6,
            "decode mean us": mean_decode * 1e6,
            "per token us": (mean_gap + mean_decode) * 1e6,
            "gap share": mean_gap / (mean_gap + mean_decode),
        })  # fmt: skip
    title = (
        f"token_overhead, {model.name}, {args.threads} threads, greedy, {args.reps} rounds, max_tokens {args.tokens}"
    )
    print_table(rows, list(rows[0]), title=title)
    parts = [
        {"engine thread, per token": label, "us": timers.total[label] / breakdown_tokens * 1e6,
         "calls per token": timers.count[label] / breakdown_tokens}
        for label in timers.total
    ]  # fmt: skip
    print_table(parts, ["engine thread, per token", "us", "calls per token"], title="engine breakdown (own timers)")
    path = write_result(
        args.name,
        {"settings": vars(args) | {"model": str(model)}, "rows": rows, "engine_breakdown": parts},
        model=model,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
