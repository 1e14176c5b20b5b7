"""A random-weight GGUF with exactly CodeActAgent-Mistral-7B's shapes, for speed figures.

The real 7B cannot be fetched on these machines, but decode speed depends on tensor shapes
and quant type, not on weight values. This writes a llama-architecture GGUF with Mistral-7B's
hyper-parameters (32 layers, hidden 4096, FFN 14336, 32 heads, 8 KV heads, vocab 32002,
RoPE theta 10000, context 32768) and a SentencePiece-style vocabulary whose last two tokens
are ``<|im_start|>``/``<|im_end|>`` with a ChatML template, as in the real model.

Quantized blocks are written directly with random payloads and a small fixed scale (valid
Q4_0/Q8_0 blocks: an fp16 scale then the packed quants, per ``gguf.GGML_QUANT_SIZES``), so a
full 7B file takes as long as writing 4 GB rather than quantizing 7 B floats in numpy. The
scale keeps activations finite, so the model samples real (meaningless) tokens.
``--layers N`` writes a shallower model for CPU scaling figures. Every figure measured on
it is SYNTHETIC: labelled so in RESULTS.md and in the JSON (``synthetic_random_weights``).

Run: ``.venv/bin/python -m benchmarks.synth_model OUT.gguf [--layers 32] [--quant Q4_0]``
and ``--bench`` to measure CPU decode tok/s on the written file.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Arch:
    """CodeActAgent-Mistral-7b-v0.1 (Mistral-7B-v0.1 plus two ChatML tokens)."""

    layers: int = 32
    hidden: int = 4096
    ffn: int = 14336
    heads: int = 32
    kv_heads: int = 8
    vocab: int = 32002
    rope_theta: float = 10000.0
    context: int = 32768
    rms_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


QUANTS = {"Q4_0": gguf.GGMLQuantizationType.Q4_0, "Q8_0": gguf.GGMLQuantizationType.Q8_0}
FILE_TYPES = {"Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}


def tensor_shapes(arch: Arch) -> Iterator[tuple[str, tuple[int, ...]]]:
    """GGUF tensor names and numpy-order shapes (rows, columns) of a llama model."""
    kv = arch.kv_heads * arch.head_dim
    yield "token_embd.weight", (arch.vocab, arch.hidden)
    for i in range(arch.layers):
        yield f"blk.{i}.attn_norm.weight", (arch.hidden,)
        yield f"blk.{i}.attn_q.weight", (arch.hidden, arch.hidden)
        yield f"blk.{i}.attn_k.weight", (kv, arch.hidden)
        yield f"blk.{i}.attn_v.weight", (kv, arch.hidden)
        yield f"blk.{i}.attn_output.weight", (arch.hidden, arch.hidden)
        yield f"blk.{i}.ffn_norm.weight", (arch.hidden,)
        yield f"blk.{i}.ffn_gate.weight", (arch.ffn, arch.hidden)
        yield f"blk.{i}.ffn_up.weight", (arch.ffn, arch.hidden)
        yield f"blk.{i}.ffn_down.weight", (arch.hidden, arch.ffn)
    yield "output_norm.weight", (arch.hidden,)
    yield "output.weight", (arch.vocab, arch.hidden)


def random_blocks(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType, rng: np.random.Generator) -> np.ndarray:
    """Valid quant blocks of random quants; fp16 scale chosen so weights have std ~0.02."""
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    rows, cols = shape
    blocks = rng.integers(0, 256, size=(rows, cols // block, type_size), dtype=np.uint8)
    # Q4_0: q in 0..15, w = (q - 8) * d, std(q) ~ 4.6; Q8_0: q in -128..127, std ~ 74.
    scale = 0.02 / (4.6 if qtype == gguf.GGMLQuantizationType.Q4_0 else 74.0)
    blocks[:, :, 0:2] = np.frombuffer(np.float16(scale).tobytes(), dtype=np.uint8)
    return blocks.reshape(rows, -1)


def vocabulary(size: int) -> tuple[list[str], list[float], list[int]]:
    """<unk>, <s>, </s>, 256 byte tokens, printable pieces, then <|im_start|>, <|im_end|>."""
    types = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    kinds = [types.UNKNOWN, types.CONTROL, types.CONTROL] + [types.BYTE] * 256
    pieces = [chr(c) for c in range(33, 127)] + ["▁" + chr(c) for c in range(33, 127)] + ["▁"]
    filler = size - 2 - len(tokens) - len(pieces)
    pieces += [f"▁w{i}" for i in range(filler)]
    tokens += pieces
    kinds += [types.NORMAL] * len(pieces)
    tokens += ["<|im_start|>", "<|im_end|>"]
    kinds += [types.CONTROL, types.CONTROL]
    scores = [0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(len(pieces))] + [0.0, 0.0]
    assert len(tokens) == size
    return tokens, scores, [int(k) for k in kinds]


def write_model(path: Path, arch: Arch, quant: str, seed: int = 0) -> Path:
    """Stream the GGUF to ``path`` one tensor at a time (a 7B never sits in memory whole)."""
    qtype = QUANTS[quant]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"SYNTHETIC random-weight CodeActAgent-Mistral-7B shapes ({arch.layers} layers, {quant})")
    writer.add_context_length(arch.context)
    writer.add_embedding_length(arch.hidden)
    writer.add_block_count(arch.layers)
    writer.add_feed_forward_length(arch.ffn)
    writer.add_head_count(arch.heads)
    writer.add_head_count_kv(arch.kv_heads)
    writer.add_rope_dimension_count(arch.head_dim)
    writer.add_rope_freq_base(arch.rope_theta)
    writer.add_layer_norm_rms_eps(arch.rms_eps)
    writer.add_vocab_size(arch.vocab)
    writer.add_file_type(FILE_TYPES[quant])
    tokens, scores, kinds = vocabulary(arch.vocab)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(kinds)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)  # like the real GGUF: eos says </s>, turns end with <|im_end|>
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHATML_TEMPLATE)

    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    shapes = list(tensor_shapes(arch))
    for name, shape in shapes:
        if len(shape) == 1:
            writer.add_tensor_info(name, shape, np.dtype(np.float32), shape[0] * 4)
        else:
            byte_shape = (shape[0], shape[1] // block * type_size)
            writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), byte_shape[0] * byte_shape[1], raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for _, shape in shapes:
        if len(shape) == 1:
            writer.write_tensor_data(np.ones(shape, dtype=np.float32))
        else:
            writer.write_tensor_data(random_blocks(shape, qtype, rng))
    writer.close()
    return path


def bench_decode(path: Path, threads: int, tokens: int, n_gpu_layers: int = 0) -> dict[str, float]:
    """Decode and prompt tok/s of the synthetic file through raw llama.cpp (CPU unless offloaded)."""
    import llama_cpp

    llama = llama_cpp.Llama(str(path), n_ctx=512, n_threads=threads, n_gpu_layers=n_gpu_layers, verbose=False)
    prompt = llama.tokenize(b"<|im_start|>user\nwrite some code<|im_end|>\n<|im_start|>assistant\n", special=True)
    prompt = (prompt * 8)[:128]
    start = time.perf_counter()
    first, count = 0.0, 0
    gen = llama.generate(prompt, temp=0.0, top_k=1, min_p=0.0, repeat_penalty=1.0)
    for _ in gen:
        if not first:
            first = time.perf_counter()
        count += 1
        if count >= tokens:
            break
    gen.close()
    end = time.perf_counter()
    llama.close()
    return {
        "prompt_tokens": len(prompt),
        "prompt_tok_s": len(prompt) / (first - start),
        "decode_tokens": count,
        "decode_tok_s": (count - 1) / (end - first),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path, help="where to write the .gguf")
    parser.add_argument("--layers", type=int, default=32, help="transformer blocks (32 = the real 7B)")
    parser.add_argument("--quant", choices=sorted(QUANTS), default="Q4_0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bench", action="store_true", help="then measure CPU decode tok/s (SYNTHETIC)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--n-gpu-layers", type=int, default=0, help="-1 offloads all (GPU builds)")
    args = parser.parse_args(argv)
    arch = Arch(layers=args.layers)
    started = time.perf_counter()
    write_model(args.out, arch, args.quant, args.seed)
    size = args.out.stat().st_size
    took = time.perf_counter() - started
    print(f"wrote {args.out} ({size / 2**30:.2f} GiB, {arch.layers} layers, {args.quant}) in {took:.0f} s")
    if not args.bench:
        return
    from benchmarks.common import print_table, write_result
    from models.engine.llama.engine import physical_cores

    threads = args.threads or physical_cores()
    figures = bench_decode(args.out, threads, args.tokens, args.n_gpu_layers)
    row = {
        "model": f"SYNTHETIC 7B-shape {arch.layers}L {args.quant}",
        "threads": threads,
        "ngl": args.n_gpu_layers,
        **figures,
    }
    print_table([row], list(row), title="SYNTHETIC random weights: CPU speed of CodeActAgent-Mistral-7B shapes")
    name = f"synth_{arch.layers}L_{args.quant}"
    path = write_result(
        name,
        {"settings": vars(args) | {"out": str(args.out), "threads": threads, "arch": vars(arch)}, "rows": [row]},
        model=args.out,
        synthetic=True,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
