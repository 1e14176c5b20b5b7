"""Where the M3ToolEval files live, and loading them.

The task set and its data tables are not vendored into this repository: they sit in the
shared directory beside the checkout (``<repo>/../shared/m3tooleval``), with their MIT
notice. ``M3TOOLEVAL_DATA`` points somewhere else (the ``data/`` folder itself); the task
list and the example files are read from that folder's parent, which is how the shared
directory is laid out.
"""

from __future__ import annotations

import ast
import functools
import json
import os
from pathlib import Path
from typing import Any

DATA_ENV_VAR = "M3TOOLEVAL_DATA"

_REPO_ROOT = Path(__file__).resolve().parents[2]

#: Domain name (the task-name prefix) -> file name under ``data/``.
DOMAIN_FILES: dict[str, str] = {
    "message_decoder": "message_decoder.json",
    "cryptobotanists_plant_dna_sequencer": "cryptobotanists_plant_dna_sequencer.json",
    "trade_calculator": "trade_calculator.json",
    "travel_itinerary_planning": "travel_itinerary_planning.json",
    "web_browsing": "web_browsing.json",
}


def data_dir() -> Path:
    """The folder holding the per-domain JSON tables (``M3TOOLEVAL_DATA`` wins)."""
    override = os.environ.get(DATA_ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    return (_REPO_ROOT.parent / "shared" / "m3tooleval" / "data").resolve()


def suite_dir() -> Path:
    """The folder holding ``tasks.json`` and the example files: ``data_dir()``'s parent."""
    return data_dir().parent


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"M3ToolEval file missing: {path} (set {DATA_ENV_VAR} to the data/ folder)")
    return json.loads(path.read_text(encoding="utf-8"))


@functools.cache
def load_tasks() -> tuple[dict[str, Any], ...]:
    """All 82 tasks in upstream order, as stored in ``tasks.json``."""
    return tuple(_read_json(suite_dir() / "tasks.json"))


@functools.cache
def load_domain_data(domain: str) -> dict[str, Any]:
    """The data table file of one domain (tools embed what they need from it)."""
    try:
        name = DOMAIN_FILES[domain]
    except KeyError:
        raise ValueError(f"unknown M3ToolEval domain: {domain!r}") from None
    data: dict[str, Any] = _read_json(data_dir() / name)
    return data


def load_examples(name: str) -> Any:
    """One of the shared golden files, e.g. ``tool_call_examples.json``."""
    return _read_json(suite_dir() / name)


def task_by_name(name: str) -> dict[str, Any]:
    """Look a task up by its full ``domain/name`` identifier."""
    for task in load_tasks():
        if task["name"] == name:
            return task
    raise KeyError(name)


def expected_value(task: dict[str, Any]) -> Any:
    """The expected output as the Python value upstream held.

    Read from ``expected_output_repr``, not ``expected_output``: JSON cannot tell a tuple
    from a list, and some parsers read ``8100.0`` back as an int, while the judge compares
    ``str()`` forms, so the exact type matters.
    """
    value = ast.literal_eval(task["expected_output_repr"])
    if type(value).__name__ != task["expected_output_type"]:
        raise ValueError(
            f"{task['name']}: repr {task['expected_output_repr']!r} is not a {task['expected_output_type']}"
        )
    return value
