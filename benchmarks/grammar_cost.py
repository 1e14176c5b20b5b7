"""What the CodeAct action grammar costs in decode speed, and what the fast path saves.

Same prompts, same model, one process, variants interleaved prompt by prompt so that the
load other people put on this machine hits every variant alike. The figure that matters is
the paired ratio: grammar-constrained tok/s over unconstrained tok/s on the same prompt in
the same round (median over prompts x repetitions). Target (issue 8): cost <= 5%, i.e.
ratio >= 0.95.

Variants:
- ``raw``: ``llama_cpp.Llama.generate`` with no grammar (the reference).
- ``raw+grammar naive``: ``Llama.generate(grammar=...)``: llama-cpp-python puts the grammar
  in the sampler chain, masking the whole vocabulary every token (what the engine did before).
- ``raw+tag-only naive``: a grammar without the 300-character thinking bound, to see how
  much of the naive cost is grammar size rather than vocabulary size.
- ``engine`` / ``engine+grammar``: ``LlamaEngine`` (owner thread, stop matching, UTF-8
  decoding), without and with ``ACTION_GRAMMAR``; with it, the engine's lazy check
  (``models.engine.llama.grammar``: sample unconstrained, check that one token, mask only on
  rejection). That is the figure the target is about.

Run: ``.venv/bin/python -m benchmarks.grammar_cost [--threads 1] [--reps 3] [--tokens 96]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from benchmarks.common import embedded_model_path, median, print_table, write_result
from models.engine.api import GenerationRequest, generate_text
from models.engine.chat_format import render_chatml
from models.engine.llama.engine import LlamaEngine, physical_cores
from server.agent.actions import ACTION_GRAMMAR

SYSTEM_PROMPT = (
    "You are a helpful assistant that can interact with an interactive Python (Jupyter "
    "Notebook) environment and receive the corresponding output when needed. The code should "
    "be enclosed using \"<execute>\" tag, for example: <execute> print('Hello World!') "
    "</execute>.\nYou should attempt fewer things at a time instead of putting too much code "
    "in one <execute> block. When you have the final answer, give it inside <solution> tags, "
    "for example: The answer is <solution> A </solution>.\nYou have 5 turns left."
)

TASKS = (
    "What is the sum of the squares of the integers from 1 to 100?",
    "Read the file data.csv, and tell me how many rows have a price above 10.",
    "Write a function that checks whether a string is a palindrome and test it on 'racecar'.",
    "How many prime numbers are there below 10000?",
)

TAG_ONLY_GRAMMAR = r"""
root     ::= thought action
thought  ::= ( [^<] | "<" [^es/] )*
action   ::= "<execute>" body "</execute>" | "<solution>" body "</solution>"
body     ::= ( [^<] | "<" [^/] | "</" [^es] )*
"""


@dataclass
class Run:
    """One generation: tokens after the first, and the seconds they took."""

    tokens: int
    decode_s: float

    @property
    def tok_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.tokens > 1 and self.decode_s > 0 else float("nan")


def time_tokens(tokens: object, limit: int, eog: Callable[[int], bool]) -> Run:
    """Consume a token generator up to ``limit`` tokens or end of generation, timing decode."""
    first, count = 0.0, 0
    try:
        for token in tokens:  # type: ignore[attr-defined]
            if not first:
                first = time.perf_counter()
            if eog(token):
                break
            count += 1
            if count >= limit:
                break
    finally:
        tokens.close()  # type: ignore[attr-defined]
    return Run(tokens=count, decode_s=time.perf_counter() - first if first else 0.0)


class Bench:
    """The model loaded twice (raw ``Llama`` and ``LlamaEngine``), with the same settings."""

    def __init__(self, model: Path, threads: int, ctx: int) -> None:
        self.llama = llama_cpp.Llama(
            str(model), n_ctx=ctx, n_threads=threads, n_threads_batch=threads, n_gpu_layers=0, verbose=False
        )
        self.engine = LlamaEngine(model, model_id="bench", ctx_size=ctx, threads=threads, n_gpu_layers=0)
        im_end = self.llama.tokenize(b"<|im_end|>", add_bos=False, special=True)
        vocab = self.llama._model.vocab  # noqa: SLF001
        self.eog = lambda t: t in im_end or bool(llama_cpp.llama_vocab_is_eog(vocab, t))

    def raw(self, prompt: str, limit: int, grammar: str | None = None) -> Run:
        tokens = self.llama.tokenize(prompt.encode(), add_bos=True, special=True)
        self.llama.reset()
        compiled = llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) if grammar else None
        gen = self.llama.generate(
            tokens, temp=0.0, top_k=1, top_p=0.95, min_p=0.0, repeat_penalty=1.0, grammar=compiled
        )
        return time_tokens(gen, limit, self.eog)

    def engine_run(self, prompt: str, limit: int, grammar: str | None = None) -> Run:
        request = GenerationRequest(prompt=prompt, max_tokens=limit, temperature=0.0, grammar=grammar)
        result = asyncio.run(generate_text(self.engine, request))
        return Run(tokens=result.completion_tokens, decode_s=result.total_s - result.time_to_first_token_s)

    def close(self) -> None:
        self.engine.close()
        self.llama.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: the embedded SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--tokens", type=int, default=96, help="max tokens per generation")
    parser.add_argument("--reps", type=int, default=3, help="rounds over all prompts")
    parser.add_argument("--name", default="grammar_cost", help="result file name")
    args = parser.parse_args(argv)
    model = args.model or embedded_model_path()

    bench = Bench(model, args.threads, args.ctx)
    variants: dict[str, Callable[[str], Run]] = {
        "raw": lambda p: bench.raw(p, args.tokens),
        "raw+grammar naive": lambda p: bench.raw(p, args.tokens, ACTION_GRAMMAR),
        "raw+tag-only naive": lambda p: bench.raw(p, args.tokens, TAG_ONLY_GRAMMAR),
        "engine": lambda p: bench.engine_run(p, args.tokens),
        "engine+grammar": lambda p: bench.engine_run(p, args.tokens, ACTION_GRAMMAR),
    }
    prompts = [
        render_chatml([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": t}]) for t in TASKS
    ]
    for prompt in prompts:  # warm-up: page the weights in, fill caches
        bench.raw(prompt, 8)
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    for _ in range(args.reps):
        for prompt in prompts:
            for name, variant in variants.items():
                runs[name].append(variant(prompt))
    bench.close()

    rows = []
    baseline = {"raw": runs["raw"], "engine": runs["engine"]}
    for name, items in runs.items():
        ref = baseline["engine" if name.startswith("engine") else "raw"]
        ratios = [r.tok_s / b.tok_s for r, b in zip(items, ref, strict=True)]
        rows.append(
            {
                "variant": name,
                "tok/s (median)": median(r.tok_s for r in items),
                "vs same-path no grammar (median paired)": median(ratios),
                "vs raw (median paired)": median(r.tok_s / b.tok_s for r, b in zip(items, runs["raw"], strict=True)),
                "tokens (median)": median(r.tokens for r in items),
            }
        )
    columns = list(rows[0])
    print_table(
        rows,
        columns,
        title=f"grammar cost, {model.name}, {args.threads} threads, greedy, {args.reps} reps x {len(prompts)} prompts",
    )
    path = write_result(
        args.name,
        {
            "settings": vars(args) | {"model": str(model), "temperature": 0.0, "tasks": list(TASKS)},
            "rows": rows,
            "runs": {name: [vars(r) for r in items] for name, items in runs.items()},
        },
        model=model,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
