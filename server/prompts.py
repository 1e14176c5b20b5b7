"""What the model reads: the system prompt, tool descriptions and observations.

Written in the spirit of CodeActAgent's training data (our own words): the model is told it
has an interactive Python environment, that code goes in ``<execute>`` and answers in
``<solution>``, which tool functions are already defined (numbered, with signature and
description, under the heading the model was trained on), and how many turns it has.
Execution output comes back as a *user* message starting with ``Execution Output:``, empty
output becomes an explicit marker, long output keeps its head and tail, and the number of
turns left is appended, as in the training trajectories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

OBSERVATION_PREFIX = "Execution Output:"
EMPTY_OUTPUT = "[Code executed successfully with no output]"
NO_OUTPUT = "[No output]"  # when the run was stopped: not "successfully"
HEAD_CHARS = 2000
TAIL_CHARS = 2000

SYSTEM_PROMPT = """\
You are a helpful assistant that solves tasks by writing and running Python code.
You have an interactive Python environment, like a Jupyter notebook: variables, imports \
and files persist from one execution to the next, and a trailing expression shows its value.
To run code, put it between <execute> and </execute>, for example:
<execute>
print("Hello World!")
</execute>
You will then see what the code printed. Write a little code at a time, check its output, \
and fix errors before going on. Import packages and define variables before you use them. \
The environment is offline: packages cannot be installed.
When you know the answer, give it between <solution> and </solution>, for example: \
<solution>42</solution>. Each of your replies is a short explanation of your thinking \
followed by exactly one <execute> block or one <solution> block.
You have {max_turns} turns to solve the task."""

TOOLS_HEADING = "Tool function available (already imported in <execute> environment):"


@dataclass(frozen=True)
class ToolSpec:
    """A tool the code may call: defined in the sandbox by ``source``, described by the rest."""

    name: str
    signature: str
    description: str
    source: str


def system_prompt(max_turns: int, tools: Sequence[ToolSpec] = (), extra: str = "") -> str:
    """The system message for a new session."""
    text = SYSTEM_PROMPT.format(max_turns=max_turns)
    if tools:
        lines = [TOOLS_HEADING]
        for number, tool in enumerate(tools, start=1):
            signature = tool.signature if tool.signature.startswith(tool.name) else (
                f"{tool.name}{tool.signature}"
            )
            lines.append(f"[{number}] {signature}")
            lines.append(tool.description.strip())
        text += "\n\n" + "\n".join(lines)
    if extra.strip():
        text += "\n\n" + extra.strip()
    return text


def cut_middle(text: str, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> tuple[str, bool]:
    """Keep the first ``head`` and last ``tail`` characters of long output, marking the cut."""
    if len(text) <= head + tail:
        return text, False
    omitted = len(text) - head - tail
    marker = f"\n[... {omitted} characters omitted ...]\n"
    return text[:head] + marker + text[-tail:], True


@dataclass(frozen=True)
class ObservationParts:
    """The pieces of one execution that the model should read."""

    stdout: str
    stderr: str
    error: str | None
    notice: str | None
    files: Sequence[str]


def render_observation(parts: ObservationParts, turns_left: int | None) -> tuple[str, bool]:
    """The user message that reports an execution; returns it and whether it was cut."""
    sections = [s for s in (parts.stdout, parts.stderr) if s.strip()]
    if parts.error:
        sections.append(parts.error.rstrip())
    body = "\n".join(s.rstrip("\n") for s in sections)
    body, cut = cut_middle(body)
    if not body.strip():
        body = NO_OUTPUT if parts.notice else EMPTY_OUTPUT
    extras = []
    if parts.notice:
        extras.append(parts.notice)
    if parts.files:
        extras.append("Files created or changed in the workspace: " + ", ".join(parts.files))
    if turns_left is not None:
        extras.append(
            f"You have {turns_left} turn{'s' if turns_left != 1 else ''} left."
            if turns_left > 0
            else "You have no turns left; give your answer now."
        )
    text = f"{OBSERVATION_PREFIX}\n{body}"
    if extras:
        text += "\n" + "\n".join(extras)
    return text, cut
