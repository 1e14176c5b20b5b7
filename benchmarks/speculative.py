"""Prompt-lookup speculative decoding on agent trajectories: does drafting pay on this machine?

An agent's next turn repeats what the conversation already holds (function names, code it
wrote, columns an observation printed), so the tokens that followed the last few generated
tokens earlier in the prompt are free guesses (``models.engine.llama.lookup``). The engine decodes
them with the real next token in one ``llama_decode`` and keeps those the model confirms.
That wins only when verifying k+1 tokens costs about as much as decoding one: true of
memory-bound GPU decode, not obviously of a compute-bound CPU. This script measures both
halves on realistic CodeAct prompts (ChatML, our system prompt, earlier ``<execute>`` code
and observations, a follow-up that asks to fix / rerun / extend that code):

* arms ``K`` = 0 (off), 2, 4, 8 drafts per step, and K=4 with ``min_ngram=2`` (only guess
  after a 2-token match: fewer, better drafts), interleaved per prompt to cancel drift;
  greedy, so each arm's text can be compared with K=0's;
* optionally, the cost of one ``llama_decode`` of 1, 2, 3, 5, 9 tokens of one sequence at
  the prompts' depth: drafting breaks even when tokens per step exceed that cost ratio.

    python -m benchmarks.speculative [--model PATH] [--threads N] [--reps R] [--max-tokens N]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp._internals as llama_internals

from benchmarks.common import embedded_model_path, median, print_table, write_result
from models.engine.api import GenerationRequest, GenerationResult, generate_text
from models.engine.chat_format import render_chatml
from models.engine.llama.engine import LlamaEngine
from models.engine.llama.lookup import PromptLookup
from models.engine.llama.slots import ActiveGeneration
from server.agent.prompts import ToolSpec, system_prompt

ARMS: tuple[tuple[str, int, int], ...] = (
    ("K=0", 0, 1),
    ("K=2", 2, 1),
    ("K=4", 4, 1),
    ("K=8", 8, 1),
    ("K=4 min2", 4, 2),
)
N_BATCH = 512
VERIFY_SIZES = (1, 2, 3, 5, 9)
TOOLS = [
    ToolSpec(
        "get_weather",
        "get_weather(city: str, day: str) -> dict",
        "Forecast for a city on a day: keys temp_c, rain_mm, wind_kmh.",
        "",
    )
]

# (earlier assistant code, its observation, the follow-up user message); each one is a
# conversation whose natural next turn reuses names and lines from the code above it.
SCENARIOS: list[tuple[str, str, str]] = [
    (
        "def moving_average(values, window):\n    result = []\n    for i in range(len(values) - window):\n"
        "        result.append(sum(values[i:i + window]) / window)\n    return result\n\n"
        "prices = [10.0, 11.5, 12.0, 11.0, 13.5, 14.0]\nprint(moving_average(prices, 3))",
        "[11.166666666666666, 11.5, 12.166666666666666]",
        "The last window is missing. Fix the bug in the function above and print the result again.",
    ),
    (
        "def summarize_orders(orders, region):\n    selected = [o for o in orders if o['region'] == region]\n"
        "    total = sum(o['amount'] for o in selected)\n    return {'region': region, 'count': len(selected), "
        "'total': total}\n\nprint(summarize_orders(orders, 'north'))",
        "{'region': 'north', 'count': 41, 'total': 18234.5}",
        "Call the function again for the regions 'south' and 'west' and print both summaries.",
    ),
    (
        "import pandas as pd\nsales_df = pd.read_csv('sales_2023.csv')\nprint(sales_df.head())",
        "   order_id  customer_id  product_name  quantity  unit_price  order_date\n"
        "0      1001          17  Widget A             3        9.99  2023-01-04\n"
        "1      1002          23  Widget B             1       24.50  2023-01-04\n"
        "2      1003          17  Gadget X             5        4.75  2023-01-05",
        "Print the dataframe columns, then the total revenue (quantity * unit_price) per product_name.",
    ),
    (
        "class InventoryItem:\n    def __init__(self, name, quantity, price):\n        self.name = name\n"
        "        self.quantity = quantity\n        self.price = price\n\n    def total_value(self):\n"
        "        return self.quantity * self.price\n\nitem = InventoryItem('bolt', 120, 0.25)\n"
        "print(item.total_value())",
        "30.0",
        "Add a method restock(self, amount) to the InventoryItem class above, then test it on item.",
    ),
    (
        "forecast = get_weather('Lisbon', 'monday')\nprint(forecast)",
        "{'temp_c': 19.5, 'rain_mm': 0.0, 'wind_kmh': 14}",
        "Now get the weather for Porto and Madrid on monday too and print which city is warmest.",
    ),
    (
        "import re\n\ndef parse_log_line(line):\n    match = re.match(r'(\\d+-\\d+-\\d+) (\\w+) (.*)', line)\n"
        "    date, level, message = match.groups()\n    return {'date': date, 'level': level, 'message': message}\n\n"
        "lines = ['2024-03-01 ERROR disk full', '2024-03-01 INFO backup done', 'corrupted line']\n"
        "for line in lines:\n    print(parse_log_line(line))",
        "{'date': '2024-03-01', 'level': 'ERROR', 'message': 'disk full'}\n"
        "{'date': '2024-03-01', 'level': 'INFO', 'message': 'backup done'}\nTraceback (most recent call last):\n"
        '  File "<stdin>", line 9, in <module>\n  File "<stdin>", line 4, in parse_log_line\n'
        "AttributeError: 'NoneType' object has no attribute 'groups'",
        "Fix parse_log_line so that it returns None for lines that do not match, and run the loop again.",
    ),
    (
        "import json, glob\ntotals = {}\nfor path in sorted(glob.glob('data/*.json')):\n"
        "    with open(path) as handle:\n        record = json.load(handle)\n"
        "    totals[record['user_id']] = totals.get(record['user_id'], 0) + record['amount']\nprint(totals)",
        "Traceback (most recent call last):\n  File \"<stdin>\", line 6, in <module>\nKeyError: 'amount'",
        "Some records use the key 'value' instead of 'amount'. Fix the loop above to handle both keys.",
    ),
    (
        "import matplotlib.pyplot as plt\nmonths = ['jan', 'feb', 'mar', 'apr']\nrevenue = [120, 135, 128, 150]\n"
        "fig, ax = plt.subplots()\nax.plot(months, revenue, marker='o')\nax.set_title('Revenue per month')\n"
        "fig.savefig('revenue.png')\nprint('saved')",
        "saved",
        "Plot the same data as a bar chart with axis labels and save it as revenue_bar.png.",
    ),
]


def agent_prompt(code: str, observation: str, follow_up: str) -> str:
    """A CodeAct conversation: task, one code turn, its observation, then the follow-up request."""
    messages = [
        {"role": "system", "content": system_prompt(5, TOOLS)},
        {"role": "user", "content": "Help me with some data work in Python."},
        {"role": "assistant", "content": f"I will start by writing the code.\n<execute>\n{code}\n</execute>"},
        {"role": "user", "content": f"Execution Output:\n{observation}\nYou have 4 turns left."},
        {"role": "user", "content": follow_up},
    ]
    return render_chatml(messages)


class LookupEngine(LlamaEngine):
    """``LlamaEngine`` whose lookup index only guesses after a ``min_ngram``-token match.

    A benchmark-side variant, so the engine grows a setting only if the data says it pays.
    """

    def __init__(self, *args: Any, min_ngram: int = 1, **kwargs: Any) -> None:
        self._min_ngram = min_ngram
        super().__init__(*args, **kwargs)

    def _open_generation(self, job: Any, cached_tokens: int) -> ActiveGeneration:
        generation = super()._open_generation(job, cached_tokens)
        if generation.lookup is not None and self._min_ngram > 1:
            generation.lookup = PromptLookup(job.prompt_tokens, min_ngram=self._min_ngram)
        return generation


def first_divergence(engine: LlamaEngine, text: str, reference: str) -> int | None:
    """Token index (re-tokenized) where ``text`` first differs from ``reference``; None if equal."""
    if text == reference:
        return None
    pairs = zip(text, reference, strict=False)
    chars = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(text), len(reference)))
    return engine.count_tokens(reference[:chars]) - engine.count_tokens("")


async def run_arms(model: Path, threads: int, reps: int, max_tokens: int, prompts: list[str]) -> dict[str, Any]:
    engines = {
        name: LookupEngine(
            model,
            model_id="bench",
            ctx_size=4096,
            threads=threads,
            batch_size=N_BATCH,
            lookup_draft_tokens=k,
            min_ngram=m,
        )
        for name, k, m in ARMS
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    try:
        for rep in range(reps):
            for p, prompt in enumerate(prompts):
                names = list(engines)
                shift = (rep * len(prompts) + p) % len(names)  # rotate which arm goes first: no order bias
                for name in names[shift:] + names[:shift]:
                    engine = engines[name]
                    steps = engine._scheduler.steps  # noqa: SLF001 - decode steps are what drafting saves
                    request = GenerationRequest(
                        prompt=prompt, max_tokens=max_tokens, temperature=0, stop=(*engine.info.stop, "</execute>")
                    )
                    result: GenerationResult = await generate_text(engine, request)
                    prefill_steps = math.ceil((result.prompt_tokens - result.cached_prompt_tokens) / N_BATCH)
                    runs[name].append(
                        {
                            "rep": rep,
                            "prompt": p,
                            "text": result.text,
                            "tokens": result.completion_tokens,
                            "decode_s": result.total_s - result.time_to_first_token_s,
                            "decode_steps": engine._scheduler.steps - steps - prefill_steps,  # noqa: SLF001
                            "drafted": result.draft_tokens,
                            "accepted": result.accepted_draft_tokens,
                        }
                    )
                line = ", ".join(f"{n} {runs[n][-1]['tokens'] - 1}/{runs[n][-1]['decode_s']:.2f}s" for n in runs)
                print(f"rep {rep + 1}/{reps} prompt {p + 1}/{len(prompts)}: {line}", flush=True)
        reference = {(r["rep"], r["prompt"]): r["text"] for r in runs["K=0"]}
        for name, records in runs.items():
            for r in records:
                r["diverges_at_token"] = first_divergence(engines[name], r["text"], reference[(r["rep"], r["prompt"])])
    finally:
        for engine in engines.values():
            engine.close()
    return runs


def summarize(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    base_tps = 0.0
    for name, records in runs.items():
        tokens = sum(r["tokens"] - 1 for r in records)  # the first token comes from the prompt's decode
        decode_s = sum(r["decode_s"] for r in records)
        steps = sum(r["decode_steps"] for r in records)
        drafted, accepted = sum(r["drafted"] for r in records), sum(r["accepted"] for r in records)
        diverged = [r["diverges_at_token"] for r in records if r["diverges_at_token"] is not None]
        tps = tokens / decode_s if decode_s else float("nan")
        base_tps = base_tps or tps
        rows.append(
            {
                "arm": name,
                "decode tok/s": round(tps, 1),
                "vs K=0": round(tps / base_tps, 2),
                "drafted": drafted,
                "accepted": accepted,
                "accept rate": round(accepted / drafted, 2) if drafted else None,
                "tokens/step": round(tokens / steps, 2) if steps else None,
                "same text as K=0": f"{len(records) - len(diverged)}/{len(records)}",
                "median first diff (token)": median(diverged) if diverged else None,
            }
        )
    return rows


def verify_cost(model: Path, threads: int, context_tokens: int, reps: int) -> dict[int, float]:
    """Median seconds of one ``llama_decode`` of k tokens of one sequence after ``context_tokens``."""
    model_params = llama_cpp.llama_model_default_params()
    model_params.n_gpu_layers = 0
    llm = llama_internals.LlamaModel(path_model=str(model), params=model_params, verbose=False)
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = 4096, N_BATCH, N_BATCH
    params.n_threads = params.n_threads_batch = threads
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as the engine on a CPU
    ctx = llama_internals.LlamaContext(model=llm, params=params, verbose=False)
    batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
    memory = llama_cpp.llama_get_memory(ctx.ctx)

    def decode(start: int, count: int, logits_all: bool) -> float:
        batch.n_tokens = count
        for i in range(count):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = 1 + (start + i) % 1000, start + i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = logits_all or i == count - 1
        began = time.perf_counter()
        if llama_cpp.llama_decode(ctx.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        llama_cpp.llama_synchronize(ctx.ctx)
        return time.perf_counter() - began

    try:
        for start in range(0, context_tokens, N_BATCH):
            decode(start, min(N_BATCH, context_tokens - start), False)
        times: dict[int, list[float]] = {k: [] for k in VERIFY_SIZES}
        for _ in range(reps):
            for k in VERIFY_SIZES:
                times[k].append(decode(context_tokens, k, True))
                llama_cpp.llama_memory_seq_rm(memory, 0, context_tokens, -1)
        return {k: median(v) for k, v in times.items()}
    finally:
        llama_cpp.llama_batch_free(batch)
        ctx.close()
        llm.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: embedded SmolLM2)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="1 (default) stays stable under the shared machine's load; 2 threads on 2 busy cores "
        "made one decode ~7x slower, drowning the effect",
    )
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--verify-reps", type=int, default=30, help="0 skips the llama_decode cost micro-measure")
    args = parser.parse_args()
    model = args.model or embedded_model_path()
    prompts = [agent_prompt(*s) for s in SCENARIOS]
    runs = asyncio.run(run_arms(model, args.threads, args.reps, args.max_tokens, prompts))
    rows = summarize(runs)
    print_table(rows, list(rows[0]), title=f"speculative: {len(prompts)} agent prompts x {args.reps} reps, greedy")
    payload: dict[str, Any] = {"arms": rows, "runs": runs}
    if args.verify_reps:
        probe = LlamaEngine(model, model_id="probe", ctx_size=4096, threads=args.threads)
        depth = round(median(probe.count_tokens(p) for p in prompts))
        probe.close()
        cost = verify_cost(model, args.threads, depth, args.verify_reps)
        cost_rows = [
            {"tokens in batch": k, "ms": round(s * 1000, 2), "vs 1 token": round(s / cost[1], 2)}
            for k, s in cost.items()
        ]
        print_table(cost_rows, list(cost_rows[0]), title=f"cost of one llama_decode at depth {depth} (median)")
        payload["verify_cost"] = {"depth_tokens": depth, "rows": cost_rows}
    settings = {
        "threads": args.threads,
        "reps": args.reps,
        "max_tokens": args.max_tokens,
        "ctx_size": 4096,
        "n_batch": N_BATCH,
        "arms": [{"name": n, "draft_tokens": k, "min_ngram": m} for n, k, m in ARMS],
    }
    path = write_result("speculative", {**payload, "settings": settings}, model=model)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
