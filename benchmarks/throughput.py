"""Single-stream speed: raw llama.cpp vs our HTTP server vs llama-cpp-python's own server.

One run, same GGUF, same context size and thread count, greedy decoding, variants
interleaved request by request so that other people's load on this machine hits each alike:

- ``raw generate``: ``Llama.generate`` token loop (the floor: nothing but llama.cpp).
- ``raw completion``: ``Llama.create_completion(stream=True)`` on the same ChatML prompt.
- ``ours stream`` / ``ours``: ``POST /v1/chat/completions`` on real uvicorn (``server.api.loopback.LoopbackServer``).
- ``peer stream`` / ``peer``: ``python -m llama_cpp.server --chat_format chatml`` (a subprocess).

Each request starts with a unique line so no variant gets the KV-cache prefix for free;
TTFT then includes the whole prompt. Token counts of streamed text come from re-tokenizing
it with the same model (the peer's stream carries no usage). Targets (issue 8): ours >= 0.97x
raw decode tok/s, and ahead of the peer.

Run: ``.venv/bin/python -m benchmarks.throughput [--threads 1] [--reps 3] [--tokens 128]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import llama_cpp

from benchmarks.common import embedded_model_path, median, print_table, write_result
from benchmarks.grammar_cost import SYSTEM_PROMPT
from models.engine.chat_format import render_chatml
from models.engine.llama.engine import LlamaEngine, physical_cores
from server.api.app import create_app
from server.api.loopback import LoopbackServer
from server.settings import Settings

MODEL_NAME = "bench"
HISTORY = (
    "Sure. First I will load the numbers and look at them.\n<execute>\nimport statistics\n"
    "values = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]\nprint(len(values), statistics.mean(values))\n</execute>"
)
TASKS = (
    "Explain step by step how you would compute the median of a list of numbers in Python, then do it.",
    "Describe in detail how a hash map works and write a small implementation in Python.",
    "Write a Python function that parses a CSV file without the csv module and explain each part.",
)


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
    def prompt_tok_s(self) -> float:
        return self.prompt_tokens / self.ttft_s if self.ttft_s > 0 else float("nan")

    @property
    def e2e_tok_s(self) -> float:
        return self.tokens / self.total_s if self.total_s > 0 else float("nan")


def messages(task: str, nonce: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"Session {nonce}.\n{SYSTEM_PROMPT}"},
        {"role": "user", "content": "I have a list of numbers; tell me their mean."},
        {"role": "assistant", "content": HISTORY},
        {"role": "user", "content": "Execution Output:\n11 4.0909\n\n" + task},
    ]


class Runner:
    """Holds the raw model, the tokenizer used to count streamed text, and the HTTP client."""

    def __init__(self, model: Path, threads: int, ctx: int, max_tokens: int) -> None:
        self.llama = llama_cpp.Llama(
            str(model), n_ctx=ctx, n_threads=threads, n_threads_batch=threads, n_gpu_layers=0, verbose=False
        )
        self.max_tokens = max_tokens
        self.client = httpx.Client(timeout=600)
        self.im_end = self.llama.tokenize(b"<|im_end|>", add_bos=False, special=True)[0]

    def count(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode(), add_bos=False, special=False)) if text else 0

    def prompt_tokens(self, msgs: list[dict[str, str]]) -> int:
        return len(self.llama.tokenize(render_chatml(msgs).encode(), add_bos=True, special=True))

    def raw_generate(self, msgs: list[dict[str, str]]) -> Sample:
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

    def raw_completion(self, msgs: list[dict[str, str]]) -> Sample:
        start = time.perf_counter()
        stamps, text = [], ""
        for chunk in self.llama.create_completion(
            render_chatml(msgs),
            max_tokens=self.max_tokens,
            temperature=0.0,
            top_k=1,
            min_p=0.0,
            repeat_penalty=1.0,
            stop=["<|im_end|>"],
            stream=True,
        ):
            piece = chunk["choices"][0]["text"]  # type: ignore[index]
            if piece:
                stamps.append(time.perf_counter())
                text += piece
        return self._sample(msgs, start, stamps, text)

    def http(self, base: str, msgs: list[dict[str, str]], stream: bool) -> Sample:
        body = {
            "model": MODEL_NAME,
            "messages": msgs,
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "top_k": 1,
            "min_p": 0.0,
            "repeat_penalty": 1.0,
            "stream": stream,
        }
        start = time.perf_counter()
        if not stream:
            response = self.client.post(f"{base}/v1/chat/completions", json=body)
            response.raise_for_status()
            end = time.perf_counter()
            data = response.json()
            tokens = int(data["usage"]["completion_tokens"])
            return Sample(int(data["usage"]["prompt_tokens"]), float("nan"), tokens, float("nan"), end - start)
        stamps, text = [], ""
        with self.client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
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

    def _sample(self, msgs: list[dict[str, str]], start: float, stamps: list[float], text: str) -> Sample:
        end = time.perf_counter()
        first = stamps[0] if stamps else end
        last = stamps[-1] if stamps else end
        return Sample(self.prompt_tokens(msgs), first - start, self.count(text), last - first, end - start)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def peer_server(model: Path, threads: int, ctx: int) -> Iterator[str]:
    """llama-cpp-python's own server in a subprocess; needs the ``starlette-context`` extra."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_NAME,
        "--n_ctx", str(ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads),
        "--n_gpu_layers", "0", "--chat_format", "chatml", "--port", str(port), "--verbose", "False",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"llama_cpp.server exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("llama_cpp.server did not start in 120 s")
            time.sleep(0.25)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: the embedded SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per request")
    parser.add_argument("--reps", type=int, default=2, help="rounds over all tasks")
    parser.add_argument("--no-peer", action="store_true", help="skip llama_cpp.server")
    parser.add_argument("--name", default="throughput", help="result file name")
    args = parser.parse_args(argv)
    model = args.model or embedded_model_path()

    runner = Runner(model, args.threads, args.ctx, args.tokens)
    engine = LlamaEngine(model, model_id=MODEL_NAME, ctx_size=args.ctx, threads=args.threads, n_gpu_layers=0)
    app = create_app(Settings(sandbox_pool_size=0), engine)
    samples: dict[str, list[Sample]] = {}
    with (
        LoopbackServer(app) as ours,
        peer_server(model, args.threads, args.ctx) if not args.no_peer else _none() as peer,
    ):
        variants: dict[str, Callable[[list[dict[str, str]]], Sample]] = {
            "raw generate": runner.raw_generate,
            "raw completion": runner.raw_completion,
            "ours stream": lambda m: runner.http(ours.url, m, stream=True),
            "ours": lambda m: runner.http(ours.url, m, stream=False),
        }
        if peer:
            variants["peer stream"] = lambda m: runner.http(peer, m, stream=True)
            variants["peer"] = lambda m: runner.http(peer, m, stream=False)
        samples = {name: [] for name in variants}
        for variant in variants.values():  # warm-up: page in weights, start connections
            variant(messages("Say hi.", -1))
        nonce = 0
        for _ in range(args.reps):
            for task in TASKS:
                for name, variant in variants.items():
                    nonce += 1
                    samples[name].append(variant(messages(task, nonce)))

    ref = samples["raw generate"]
    rows = []
    for name, items in samples.items():
        decode = [s.decode_tok_s for s in items]
        paired = [s.decode_tok_s / r.decode_tok_s for s, r in zip(items, ref, strict=True)]
        e2e = [s.e2e_tok_s / r.e2e_tok_s for s, r in zip(items, ref, strict=True)]
        rows.append(
            {
                "variant": name,
                "decode tok/s": median(decode),
                "decode vs raw": median(paired),
                "prompt tok/s": median(s.prompt_tok_s for s in items),
                "TTFT ms": median(s.ttft_s * 1000 for s in items),
                "e2e tok/s": median(s.e2e_tok_s for s in items),
                "e2e vs raw": median(e2e),
                "tokens": median(s.tokens for s in items),
            }
        )
    print_table(
        rows,
        list(rows[0]),
        title=f"throughput, {model.name}, {args.threads} threads, greedy, {args.reps} reps x {len(TASKS)} prompts",
    )
    path = write_result(
        args.name,
        {
            "settings": vars(args) | {"model": str(model), "temperature": 0.0},
            "rows": rows,
            "samples": {name: [vars(s) for s in items] for name, items in samples.items()},
        },
        model=model,
    )
    print(f"\nwrote {path}")


@contextmanager
def _none() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    main()
