"""An agent run's record as a Jupyter notebook: the shape users already know how to read.

The task and each thought are markdown cells; each executed code is a code cell with what it
printed (stdout, stderr) and its error as the cell's outputs, numbered in order. A step the
loop forced, left out of the model's history, or answered is said so in its markdown, and
the answer closes the notebook. Built and validated with ``nbformat`` (the Jupyter project's
own library), so any notebook tool opens it.

Images: a step's record keeps the images it wrote (``server.recording``: the workspace ends
with its session), and they are the cell's ``display_data`` outputs, as Jupyter shows a plot.
"""

from __future__ import annotations

from typing import Any

import nbformat
from nbformat.notebooknode import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

#: The error line a traceback ends with, e.g. ``ZeroDivisionError: division by zero``.
_UNKNOWN_ERROR = "Error"


def run_notebook(record: dict[str, Any]) -> NotebookNode:
    """The notebook of a stored run (``AgentRunRecords.run_of``); raises if nbformat finds it invalid."""
    request = record.get("request") or {}
    cells = [new_markdown_cell(_task(record, request))]
    executed = 0
    for step in record.get("steps") or []:
        notes = _notes(step)
        thought = (step.get("thought") or "").strip()
        if thought or notes:
            cells.append(new_markdown_cell("\n\n".join(part for part in (thought, notes) if part)))
        action = step.get("action") or {}
        if action.get("type") == "execute" and action.get("code") is not None:
            executed += 1
            cells.append(
                new_code_cell(
                    action["code"],
                    execution_count=executed,
                    outputs=_outputs(step, executed),
                    metadata={"codeact": {"step": step.get("index"), "usage": step.get("usage")}},
                )
            )
        elif action.get("type") == "solution":
            cells.append(new_markdown_cell(f"**Answer:** {action.get('answer') or ''}"))
    outcome = record.get("outcome")
    if outcome:
        cells.append(new_markdown_cell(_ending(outcome)))
    notebook = new_notebook(cells=cells, metadata=_metadata(record))
    nbformat.validate(notebook)
    return notebook


def _task(record: dict[str, Any], request: dict[str, Any]) -> str:
    asked = [m.get("content", "") for m in request.get("messages") or [] if m.get("role") in ("user", "tool")]
    lines = [f"# Agent run `{record.get('id', '')}`", f"Session `{record.get('session_id', '')}`."]
    lines += [f"> {line}" for text in asked for line in str(text).splitlines()]
    return "\n\n".join(lines[:2]) + ("\n\n" + "\n".join(lines[2:]) if asked else "")


def _notes(step: dict[str, Any]) -> str:
    notes = []
    if step.get("forced"):
        notes.append(f"the loop made this an answer-only turn (`forced: {step['forced']}`)")
    if step.get("left_out"):
        notes.append("left out of what the model read next (`left_out`)")
    if step.get("resampled"):
        notes.append("sampled again after a left-out turn (`resampled`)")
    if step.get("overruled_answer"):
        notes.append(f"the model answered `{step['overruled_answer']}`; the printed value was taken instead")
    files = (step.get("observation") or {}).get("files") or []
    if files:
        names = ", ".join(f"`{f.get('path', f) if isinstance(f, dict) else f}`" for f in files)
        notes.append(f"wrote {names}")
    return "\n".join(f"*{note}*" for note in notes)


def _outputs(step: dict[str, Any], count: int) -> list[NotebookNode]:
    observation = step.get("observation") or {}
    outputs = []
    for name in ("stdout", "stderr"):
        if observation.get(name):
            outputs.append(new_output("stream", name=name, text=observation[name]))
    error = observation.get("error")
    if error:
        last = str(error).strip().splitlines()[-1] if str(error).strip() else _UNKNOWN_ERROR
        name, _, value = last.partition(": ")
        outputs.append(
            new_output("error", ename=name or _UNKNOWN_ERROR, evalue=value, traceback=str(error).splitlines())
        )
    for image in step.get("images") or []:
        outputs.append(new_output("display_data", data={image["mime"]: image["data"]}, metadata={}))
    if observation.get("timed_out"):
        outputs.append(new_output("stream", name="stderr", text="(the execution hit its time limit)\n"))
    return outputs


def _ending(outcome: dict[str, Any]) -> str:
    usage = outcome.get("usage") or {}
    sandbox = usage.get("sandbox") or {}
    ran = (
        f"; the sandbox ran {sandbox.get('executions')} cells in {sandbox.get('cpu_ms')} ms of CPU, "
        f"at most {sandbox.get('peak_memory_mb')} MB"
        if sandbox
        else ""
    )
    return (
        f"---\n**Finished:** `{outcome.get('finish_reason')}` after {outcome.get('turns')} turns; "
        f"{usage.get('prompt_tokens', 0)} prompt and {usage.get('completion_tokens', 0)} completion tokens{ran}."
        + (f"\n\n**Error:** {outcome['error']}" if outcome.get("error") else "")
    )


def _metadata(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "codeact": {key: record.get(key) for key in ("id", "session_id", "created")},
    }
