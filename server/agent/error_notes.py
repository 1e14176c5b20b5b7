"""What the model reads of an error: its own code's frames, the exception, and a one-line hint.

A traceback from a library call (``pd.read_csv`` on a file that is not there) is mostly the
library's frames: six frames of pandas internals between the model's line and the
exception, some 2000 characters that the model reads as the problem to fix, in which the
host's paths show. What the model can act on is the line of its own code that failed and
the exception. ``observation_hints: hint`` (``server.agent.options``) keeps exactly that:
the frames of the model's cells (``<cell-N>``) and every line that is not a frame (the
header, the exception, a chained exception's sentence); a run of other frames becomes one
line that says how many were cut.

The hint names what the exception means *for this loop*, for the slips that a traceback
alone does not resolve (issue 35: models read a file the task never gave, or import a
package that cannot be installed, and then retry the same code). It is a reminder of the
task's terms, never a guess at the answer. An execution that printed nothing is reminded to
print, since the model sees only what its code prints.
"""

from __future__ import annotations

import re

__all__ = ["EMPTY_OUTPUT_HINT", "error_hint", "trim_traceback"]

_FRAME = re.compile(r'^  File "(?P<file>[^"]*)", line \d+')
_OWN_CODE = re.compile(r"^<cell-\d+>$")
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*): (?P<message>.*)$")
_QUOTED = re.compile(r"'([^']+)'")

EMPTY_OUTPUT_HINT = "Hint: the code printed nothing. print() the values you need to see."

_HINTS = {
    "FileNotFoundError": "Hint: there is no file {name} in the workspace. If the task gives the data "
    "in its text, write that data into your code instead of reading a file.",
    "ModuleNotFoundError": "Hint: the module {name} is not installed, and packages cannot be installed "
    "here (no network): use the standard library or a module that is installed.",
    "NameError": "Hint: {name} is not defined. Define or import it in the code that uses it.",
}


def trim_traceback(error: str) -> str:
    """``error`` with every frame outside the model's own cells cut, each run of them noted once."""
    kept: list[str] = []
    cut = 0
    in_cut_frame = False
    for line in error.splitlines():
        frame = _FRAME.match(line)
        if frame is not None:
            in_cut_frame = _OWN_CODE.match(frame.group("file")) is None
            if in_cut_frame:
                cut += 1
                continue
        elif in_cut_frame and line.startswith("    "):
            continue  # the cut frame's source line and its carets
        else:
            in_cut_frame = False
        if cut:
            kept.append(_cut_note(cut))
            cut = 0
        kept.append(line)
    if cut:
        kept.append(_cut_note(cut))
    return "\n".join(kept)


def error_hint(error: str) -> str | None:
    """A one-line hint for the exception that ended ``error``, or None when there is none to give."""
    lines = [line for line in error.splitlines() if line.strip()]
    if not lines:
        return None
    match = _EXCEPTION.match(lines[-1])
    if match is None:
        return None
    template = _HINTS.get(match.group("type").rsplit(".", 1)[-1])
    named = _QUOTED.search(match.group("message"))
    if template is None or named is None:
        return None
    return template.format(name=f"'{named.group(1)}'")


def _cut_note(count: int) -> str:
    return f"  [{count} frame{'s' if count != 1 else ''} inside library code cut]"
