"""The GPU check's one summary: every result file in ``$OUT`` folded into ``summary.json`` and a table.

``run.sh`` calls this after every step, so the summary on disk is always the latest whole
picture, even when a later step fails or the run is killed. It reads what the steps wrote:

    manifest.json          the bundle: commit, llama-cpp-python version, Python (from prepare)
    machine.json           card, driver, CUDA, cores, backend (written by run.sh)
    steps.jsonl            one line per step: name, status (ok/failed/skipped), seconds, detail
    llama-bench-*.json     llama-bench -o json, one file per model quant
    stream-*.json          benchmarks.gpu.stream_bench, one file per server and flash-attn mode
    agent.json             benchmarks.gpu.agent_run
    memory.jsonl           benchmarks.gpu.memory_probe snapshots

Ratios are ours / llama-server measured in the same run on the same file, per flash-attention
mode: decode tok/s of one stream, aggregate tok/s of ``concurrency`` streams, and TTFT (lower
is better, so its target is an upper bound). The targets are issue 25's. Every figure comes
from a model with random weights: the summary says ``synthetic`` at the top and in the table.

Run: ``python -m benchmarks.gpu.summary OUT_DIR [--quiet]`` (stdlib only).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

SYNTHETIC_NOTE = (
    "SYNTHETIC: random-weight model with CodeActAgent-Mistral-7B's shapes (benchmarks/synth_model.py); "
    "speed depends on shapes and quant type, the generated text means nothing"
)
#: Issue 25's targets: (figure, comparison, bound).
TARGETS = {
    "decode": (">=", 0.97),
    "aggregate": (">=", 1.0),
    "ttft": ("<=", 1.1),
}
OURS = "ours"
UPSTREAM = "llama-server"


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {"unreadable": f"{path.name}: {exc}"}


def _load_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            rows.append({"unreadable": line[:200]})
    return rows


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, or None when either is missing or theirs is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def meets(figure: str, value: float | None) -> bool | None:
    """Whether a ratio meets its target (None when there is no ratio)."""
    if value is None:
        return None
    op, bound = TARGETS[figure]
    return value >= bound if op == ">=" else value <= bound


def llama_bench_rows(records: list[dict[str, Any]], quant: str) -> list[dict[str, Any]]:
    """llama-bench's JSON records as ``{quant, fa, test, tok_s}`` (test is pp512 or tg128)."""
    rows = []
    for record in records if isinstance(records, list) else []:
        n_prompt, n_gen = int(record.get("n_prompt") or 0), int(record.get("n_gen") or 0)
        test = f"pp{n_prompt}" if n_prompt else f"tg{n_gen}"
        rows.append(
            {
                "synthetic": True,
                "quant": quant,
                "fa": "on" if record.get("flash_attn") in (True, 1, "1", "on", "true") else "off",
                "test": test,
                "tok_s": record.get("avg_ts"),
                "stddev": record.get("stddev_ts"),
                "n_gpu_layers": record.get("n_gpu_layers"),
                "backends": record.get("backends"),
            }
        )
    return rows


def stream_entries(out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{server: {fa_mode: stream_bench document}}`` from every ``stream-*.json``."""
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(out.glob("stream-*.json")):
        document = _load_json(path)
        name = str(document.get("name") or path.stem.removeprefix("stream-"))
        server, _, fa = name.partition("/")
        entries.setdefault(server, {})[fa.removeprefix("fa-") or "default"] = document
    return entries


def compare(streams: dict[str, dict[str, dict[str, Any]]], bench: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per flash-attn mode: ours / llama-server for decode, aggregate and TTFT, and both against
    llama-bench's tg on the same quant and mode."""
    result = {}
    modes = sorted(set(streams.get(OURS, {})) | set(streams.get(UPSTREAM, {})))
    for mode in modes:
        ours = streams.get(OURS, {}).get(mode, {})
        theirs = streams.get(UPSTREAM, {}).get(mode, {})
        quant = ours.get("quant") or theirs.get("quant")
        tg = next(
            (
                r["tok_s"]
                for r in bench
                if r["test"].startswith("tg") and r["fa"] == mode and (quant is None or r["quant"] == quant)
            ),
            None,
        )
        figures = {
            "decode": ratio(ours.get("decode_tps_median"), theirs.get("decode_tps_median")),
            "aggregate": ratio(ours.get("agg_tps_best"), theirs.get("agg_tps_best")),
            "ttft": ratio(ours.get("ttft_s_median"), theirs.get("ttft_s_median")),
        }
        result[mode] = {
            "synthetic": True,
            **{f"{k}_ratio": v for k, v in figures.items()},
            **{f"{k}_met": meets(k, v) for k, v in figures.items()},
            "ttft_long_ratio": ratio(ours.get("ttft_long_s_median"), theirs.get("ttft_long_s_median")),
            "llama_bench_tg": tg,
            "ours_vs_llama_bench": ratio(ours.get("decode_tps_median"), tg),
            "llama_server_vs_llama_bench": ratio(theirs.get("decode_tps_median"), tg),
        }
    return result


def build_summary(out: Path) -> dict[str, Any]:
    """Everything in ``out`` as one document (missing files become missing sections, never errors)."""
    steps = _load_lines(out / "steps.jsonl")
    bench: list[dict[str, Any]] = []
    for path in sorted(out.glob("llama-bench-*.json")):
        bench += llama_bench_rows(_load_json(path), path.stem.removeprefix("llama-bench-"))
    streams = stream_entries(out)
    machine = _load_json(out / "machine.json") if (out / "machine.json").exists() else {}
    manifest = _load_json(out / "manifest.json") if (out / "manifest.json").exists() else {}
    agent = _load_json(out / "agent.json") if (out / "agent.json").exists() else None
    if isinstance(agent, dict):
        agent["synthetic"] = True
    return {
        "synthetic": True,
        "note": SYNTHETIC_NOTE,
        "backend": machine.get("backend"),
        "card": machine.get("card"),
        "driver": machine.get("driver"),
        "cuda": machine.get("cuda"),
        "commit": manifest.get("commit"),
        "llama_cpp_python": manifest.get("llama_cpp_python"),
        "machine": machine,
        "bundle": manifest,
        "steps": steps,
        "failed_steps": [s.get("step") for s in steps if s.get("status") == "failed"],
        "llama_bench": bench,
        "servers": {
            server: {
                mode: {"synthetic": True, **{k: v for k, v in doc.items() if not isinstance(v, list)}}
                for mode, doc in modes.items()
            }
            for server, modes in streams.items()
        },
        "ratios": compare(streams, bench),
        "targets": {k: f"{op} {bound}" for k, (op, bound) in TARGETS.items()},
        "agent": agent,
        "memory": _load_lines(out / "memory.jsonl"),
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _short(text: Any, width: int = 110) -> str:
    """One line of at most ``width`` characters (the full text stays in summary.json)."""
    line = " ".join(str(text or "").split())
    return line if len(line) <= width else line[: width - 3] + "..."


def table(rows: list[list[Any]], header: list[str]) -> str:
    """A Markdown table (fixed width, so it reads in a terminal too)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join(lines)


def render(summary: dict[str, Any]) -> str:
    """The printed report: provenance, steps, llama-bench, servers, ratios, agent run."""
    parts = [
        f"GPU check ({summary.get('backend') or 'backend unknown'}): {summary.get('card') or '-'}, "
        f"driver {summary.get('driver') or '-'}, CUDA {summary.get('cuda') or '-'}, "
        f"commit {(summary.get('commit') or '-')[:12]}, llama-cpp-python {summary.get('llama_cpp_python') or '-'}",
        summary["note"],
    ]
    if summary["steps"]:
        rows = [[s.get("step"), s.get("status"), s.get("seconds"), _short(s.get("detail"))] for s in summary["steps"]]
        parts += ["", table(rows, ["step", "status", "s", "detail"])]
    if summary["llama_bench"]:
        rows = [[r["quant"], r["fa"], r["test"], r["tok_s"]] for r in summary["llama_bench"]]
        parts += ["", "llama-bench (SYNTHETIC)", table(rows, ["quant", "fa", "test", "tok/s"])]
    servers = summary["servers"]
    if servers:
        rows = []
        for server, modes in sorted(servers.items()):
            for mode, doc in sorted(modes.items()):
                rows.append(
                    [
                        server,
                        mode,
                        doc.get("quant"),
                        doc.get("decode_tps_median"),
                        None if doc.get("ttft_s_median") is None else doc["ttft_s_median"] * 1000,
                        None if doc.get("ttft_long_s_median") is None else doc["ttft_long_s_median"] * 1000,
                        doc.get("agg_tps_best"),
                        "yes" if doc.get("complete") else "PARTIAL",
                    ]
                )
        header = ["server", "fa", "quant", "decode tok/s", "TTFT ms", "TTFT long ms", "agg tok/s", "complete"]
        parts += ["", "streams over HTTP (SYNTHETIC)", table(rows, header)]
    if summary["ratios"]:
        rows = [
            [
                mode,
                r["decode_ratio"],
                r["decode_met"],
                r["aggregate_ratio"],
                r["aggregate_met"],
                r["ttft_ratio"],
                r["ttft_met"],
                r["ttft_long_ratio"],
                r["ours_vs_llama_bench"],
                r["llama_server_vs_llama_bench"],
            ]
            for mode, r in sorted(summary["ratios"].items())
        ]
        header = [
            "fa",
            "decode ours/ls",
            ">=0.97",
            "agg ours/ls",
            ">=1.0",
            "TTFT ours/ls",
            "<=1.1",
            "TTFT long ours/ls",
            "ours/bench tg",
            "ls/bench tg",
        ]
        parts += ["", "ratios, ours / llama-server (ls), same file, same run (SYNTHETIC)", table(rows, header)]
    agent = summary.get("agent")
    if agent:
        if agent.get("status_code") == 200:
            parts += [
                "",
                f"agent run: {agent.get('finish_reason')} after {agent.get('turns')} turns in "
                f"{agent.get('wall_s', 0):.2f} s",
            ]
            rows = [
                [s["turn"], s["action"], s["completion_tokens"], s["timings"].get("generation_s"),
                 s["timings"].get("execution_s")]
                for s in agent.get("steps", [])
            ]  # fmt: skip
            parts.append(table(rows, ["turn", "action", "tokens", "generation s", "execution s"]))
        else:
            parts += ["", f"agent run FAILED (HTTP {agent.get('status_code')}): {_short(agent.get('error'), 300)}"]
    snapshots = list(summary["memory"])
    if isinstance(agent, dict):
        snapshots += [agent[k] for k in ("memory_before", "memory_after") if isinstance(agent.get(k), dict)]
    if snapshots:
        rows = [[m.get("label"), m.get("used_mib"), m.get("total_mib"), m.get("process_mib"), m.get("rss_mib")]
                for m in snapshots]  # fmt: skip
        parts += ["", "memory (MiB)", table(rows, ["when", "GPU used", "GPU total", "GPU by process", "RSS"])]
    if summary["failed_steps"]:
        parts += ["", "FAILED: " + ", ".join(str(s) for s in summary["failed_steps"])]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.summary", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the GPU check's $OUT folder")
    parser.add_argument("--quiet", action="store_true", help="write summary.json and summary.md, print nothing")
    args = parser.parse_args(argv)
    summary = build_summary(args.out)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    text = render(summary)
    (args.out / "summary.md").write_text(text + "\n")
    if not args.quiet:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
