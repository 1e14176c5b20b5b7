"""Time to first token across the turns of an agent trajectory: prefix reuse vs a cold prompt.

An agent turn's prompt is the previous turn's prompt plus what the model wrote plus the
observation, so the engine should only prefill the new tail. Measured on a scripted
5-turn trajectory (realistic lengths: a system prompt with tool descriptions, ~120-token
turns, ~150-token observations), through ``LlamaEngine``:

* ``warm``: the conversation runs in order, each turn's prompt following the last
  (4 batch slots, state cache on);
* ``cold``: before each turn an unrelated prompt evicts the KV cache (one slot, state
  cache off);
* ``interleaved``: two sessions alternate turn by turn, against one session alone: with 4
  batch slots (each conversation keeps its own slot), on one slot with the
  per-conversation state cache (snapshots saved and restored on each switch), and on one
  slot without it.

Targets (issue 8): turn 5 at least 5x faster warm than cold; interleaved TTFT within 1.5x
of one session alone.

    python -m benchmarks.multiturn [--model PATH] [--threads N] [--reps R]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from benchmarks.common import embedded_model_path, median, print_table, write_result
from models.engine.api import GenerationRequest, generate_text
from models.engine.chat_format import render_chatml
from models.engine.llama.engine import LlamaEngine
from server.agent.prompts import ToolSpec, system_prompt

TURNS = 5


def trajectory(topic: str) -> list[tuple[str, str]]:
    """(assistant turn, observation) pairs of realistic length for one conversation."""
    pairs = []
    for k in range(TURNS):
        code = "\n".join(
            f"{topic}_rows_{k}_{i} = [row for row in load_table('{topic}_{i}') if row['score'] > {k * 7 + i}]"
            for i in range(5)
        )
        turn = (
            f"Step {k + 1} for the {topic} data: I will filter the tables and look at the "
            f"scores before deciding what to compute next.\n<execute>\n{code}\n"
            f"print(len({topic}_rows_{k}_0))\n</execute>"
        )
        observation = (
            "Execution Output:\n"
            + "\n".join(
                f"{topic} table {i}: {k * 13 + i * 5} rows kept, mean score {50 + k + i * 0.5:.2f}" for i in range(6)
            )
            + f"\nYou have {TURNS - k - 1} turns left."
        )
        pairs.append((turn, observation))
    return pairs


def prompts(topic: str) -> tuple[list[str], list[str]]:
    """Each turn's prompt, and the same prompt plus the turn's text (what the KV holds after)."""
    tools = [
        ToolSpec(
            f"{topic}_tool_{i}",
            f"{topic}_tool_{i}(table: str, limit: int = 10) -> list[dict]",
            f"Return up to `limit` rows of the named {topic} table as dictionaries with "
            "id, name, score and updated fields.",
            "",
        )
        for i in range(3)
    ]
    messages = [
        {"role": "system", "content": system_prompt(TURNS, tools)},
        {"role": "user", "content": f"Analyse the {topic} tables and report the best row."},
    ]
    turn_prompts, after_turn = [], []
    for turn, observation in trajectory(topic):
        turn_prompts.append(render_chatml(messages))
        after_turn.append(render_chatml(messages) + turn)
        messages += [{"role": "assistant", "content": turn}, {"role": "user", "content": observation}]
    return turn_prompts, after_turn


async def ttft(engine: LlamaEngine, prompt: str) -> float:
    result = await generate_text(engine, GenerationRequest(prompt=prompt, max_tokens=1, temperature=0))
    return result.time_to_first_token_s


async def run_conversation(engine: LlamaEngine, topic: str) -> list[float]:
    """Warm: each turn follows the last (the model's own turn is prefilled as if generated)."""
    turn_prompts, after_turn = prompts(topic)
    times = []
    for prompt, after in zip(turn_prompts, after_turn, strict=True):
        times.append(await ttft(engine, prompt))
        await ttft(engine, after)  # the KV now holds the turn, as after real generation
    return times


async def run_cold(engine: LlamaEngine, topic: str) -> list[float]:
    turn_prompts, _ = prompts(topic)
    times = []
    for prompt in turn_prompts:
        await ttft(engine, "<|im_start|>user\nSomething unrelated entirely.<|im_end|>\n")
        times.append(await ttft(engine, prompt))
    return times


async def run_interleaved(engine: LlamaEngine, tag: str) -> list[float]:
    """Two sessions alternate turn by turn; returns session A's per-turn TTFT.

    ``tag`` makes each repetition's conversations new, so no saved state from an earlier
    repetition can serve them.
    """
    a_prompts, a_after = prompts(f"sales{tag}")
    b_prompts, b_after = prompts(f"weather{tag}")
    times = []
    for k in range(TURNS):
        times.append(await ttft(engine, a_prompts[k]))
        await ttft(engine, a_after[k])
        await ttft(engine, b_prompts[k])
        await ttft(engine, b_after[k])
    return times


async def measure(model: Path, threads: int | None, reps: int) -> dict[str, Any]:
    runs: dict[str, list[list[float]]] = {
        "warm": [],
        "cold": [],
        "interleaved, slots": [],
        "interleaved, 1 slot+cache": [],
        "interleaved, 1 slot": [],
    }
    slots = LlamaEngine(model, model_id="bench", ctx_size=4096, threads=threads, parallel=4)
    one_slot = LlamaEngine(model, model_id="bench", ctx_size=4096, threads=threads, parallel=1)
    plain = LlamaEngine(model, model_id="bench", ctx_size=4096, threads=threads, parallel=1, state_cache_mb=0)
    prompt_tokens = [slots.count_tokens(p) for p in prompts("sales")[0]]
    try:
        for rep in range(reps):
            for name, engine, run in (
                ("warm", slots, lambda e, r=rep: run_conversation(e, f"sales{r}")),
                ("cold", plain, lambda e, r=rep: run_cold(e, f"sales{r}")),
                ("interleaved, slots", slots, lambda e, r=rep: run_interleaved(e, f"s{r}")),
                ("interleaved, 1 slot+cache", one_slot, lambda e, r=rep: run_interleaved(e, f"c{r}")),
                ("interleaved, 1 slot", plain, lambda e, r=rep: run_interleaved(e, f"n{r}")),
            ):
                runs[name].append(await run(engine))
                print(
                    f"rep {rep + 1}/{reps} {name}: " + ", ".join(f"{t * 1000:.0f} ms" for t in runs[name][-1]),
                    flush=True,
                )
    finally:
        slots.close()
        one_slot.close()
        plain.close()
    per_turn = {name: [median(r[k] for r in reps_) for k in range(TURNS)] for name, reps_ in runs.items()}
    return {"per_turn_ttft_s": per_turn, "prompt_tokens": prompt_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: embedded SmolLM2)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    model = args.model or embedded_model_path()
    result = asyncio.run(measure(model, args.threads, args.reps))
    t = result["per_turn_ttft_s"]
    rows = [
        {
            "turn": k + 1,
            "prompt tokens": result["prompt_tokens"][k],
            **{f"{name} ms": round(t[name][k] * 1000, 1) for name in t},
            "cold/warm": round(t["cold"][k] / t["warm"][k], 1),
            "interleaved slots / warm": round(t["interleaved, slots"][k] / t["warm"][k], 2),
        }
        for k in range(TURNS)
    ]
    print_table(rows, list(rows[0]), title="multiturn: time to first token per turn (median of reps)")
    summary = {
        "turn5_cold_over_warm": t["cold"][-1] / t["warm"][-1],
        "interleaved_slots_over_alone_turns2to5": median(
            t["interleaved, slots"][k] / t["warm"][k] for k in range(1, TURNS)
        ),
        "interleaved_1slot_cache_over_alone_turns2to5": median(
            t["interleaved, 1 slot+cache"][k] / t["warm"][k] for k in range(1, TURNS)
        ),
        "interleaved_1slot_nocache_over_alone_turns2to5": median(
            t["interleaved, 1 slot"][k] / t["warm"][k] for k in range(1, TURNS)
        ),
    }
    print({k: round(v, 2) for k, v in summary.items()})
    path = write_result(
        "multiturn",
        {**result, "summary": summary, "settings": {"threads": args.threads, "reps": args.reps, "ctx_size": 4096}},
        model=model,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
