"""``benchmarks.quality_table``: joining one-arm-per-process result files by model and arm."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.quality_table import load, summarize


def _results(path: Path, arm: str, solved: dict[str, bool]) -> Path:
    runs = [{"task": task, "arm": arm, "solved": ok} for task, ok in solved.items()]
    path.write_text(json.dumps({"meta": {"model": "/m/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"}, "runs": runs}))
    return path


def test_the_same_arm_from_two_files_is_told_apart_by_its_label(tmp_path: Path) -> None:
    before = _results(tmp_path / "before.json", "server", {"a": True, "b": False, "c": True})
    after = _results(tmp_path / "after.json", "server", {"a": True, "b": True, "c": False})
    table = load([before, f"{after}@hint"])
    assert set(table["qwen2.5-coder-1.5b"]) == {"server", "hint"}
    summary = summarize(table, "hint", "server")
    row = summary["qwen2.5-coder-1.5b"]["hint"]
    assert (row["solved"], row["won"], row["lost"]) == (2, ["b"], ["c"])


def test_without_a_label_the_later_file_overwrites_the_arm(tmp_path: Path) -> None:
    before = _results(tmp_path / "before.json", "server", {"a": True})
    after = _results(tmp_path / "after.json", "server", {"a": False})
    assert load([before, after])["qwen2.5-coder-1.5b"]["server"] == {"a": False}
