"""What the model reads: the system prompt, tool descriptions and observations.

Written in the spirit of CodeActAgent's training data (our own words): the model is told it
has an interactive Python environment, that code goes in ``<execute>`` and answers in
``<solution>``, which tool functions are already defined (numbered, with signature and
description, under the heading the model was trained on), and how many turns it has.
Execution output comes back as a *user* message, empty output becomes an explicit marker,
long output keeps its head and tail, and the turns left are appended. Two framings
(``server.agent.options.PromptStyle``): ``mint``, as in the training trajectories (``Task:``
before the task, ``Observation:`` before the output, steps and solution chances left, the
last step reserved for a solution), and ``chat``, as in the reference chat demo
(``Execution Output:``). No prompt carries an example answer: small models copy it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sandbox.result import ExecResult
from server.agent.error_notes import EMPTY_OUTPUT_HINT, error_hint, trim_traceback
from server.agent.options import CodePlan, PromptOptions, PromptStyle
from server.tools.toolbox import ToolSpec

OBSERVATION_PREFIX = "Execution Output:"  # the reference chat demo's ("chat" style)
MINT_OBSERVATION_PREFIX = "Observation:"  # the training trajectories' ("mint" style)
TASK_PREFIX = "Task:"
REPEAT_NOTE = (
    "You already ran this code and saw this same output. If it answers the task, give the answer now as your solution."
)
LITERAL_NOTE = (
    "This code only printed what was written in it: it computed nothing. Write code that "
    "computes the answer from the task and prints the result."
)
EMPTY_OUTPUT = "[Code executed successfully with no output]"
NO_OUTPUT = "[No output]"  # when the run was stopped: not "successfully"
HEAD_CHARS = 2000
TAIL_CHARS = 2000

SYSTEM_PROMPT = """\
You are a helpful assistant that solves tasks by writing and running Python code.
You have an interactive Python environment, like a Jupyter notebook: variables, imports \
and files persist from one execution to the next, and a trailing expression shows its value.
At each turn, first {think}, then do exactly one of two things:
1. Run Python code: put it between <execute> and </execute>, for example:
<execute>
print("Hello World!")
</execute>
You will then see what the code printed: print() what you need to see.
2. Give your final answer: put it between <solution> and </solution>. Write the answer \
itself there (the value, the text or the file name the task asks for), not code and not \
the name of a variable.
{plan}Import packages and define variables before you use them. The environment is \
offline: packages cannot be installed. As soon as an output shows the answer, give it as \
your solution: running the same code again shows the same output.
You have {max_turns} turns to solve the task."""

#: ``code_plan``: how the prompt asks the model to work (``server.agent.policy`` says why).
THINK = {
    "whole": "say in a sentence or two what your code will compute",
    "plan": "think step by step, briefly",
    "steps": "think step by step, briefly",
}
PLAN = {
    "whole": "Write complete code that computes the whole answer from the task's data and \
prints it, in one <execute> block when you can. Let the code do every calculation: do not \
work values out yourself and print them. If the code fails, fix it and run it again. ",
    "plan": "Plan the whole computation in your thinking, then write code that carries out all \
of it and prints the result; check its output and fix errors before going on. ",
    "steps": "Write a little code at a time, check its output, and fix errors before going on. ",
}

TOOLS_HEADING = "Tool function available (already imported in <execute> environment):"


def system_prompt(max_turns: int, tools: Sequence[ToolSpec] = (), extra: str = "", plan: CodePlan = "steps") -> str:
    """The system message for a new session."""
    text = SYSTEM_PROMPT.format(max_turns=max_turns, think=THINK[plan], plan=PLAN[plan])
    if tools:
        lines = [TOOLS_HEADING]
        for number, tool in enumerate(tools, start=1):
            signature = tool.signature if tool.signature.startswith(tool.name) else (f"{tool.name}{tool.signature}")
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


def task_message(text: str, style: PromptStyle) -> str:
    """A user's task as the model reads it: ``Task:`` framing in the training format."""
    if style == "mint" and not text.lstrip().startswith(TASK_PREFIX):
        return f"{TASK_PREFIX}\n{text}"
    return text


def turns_left_note(turns_left: int, style: PromptStyle, final_answer: bool) -> str:
    """How much budget is left, in the words of the chosen style.

    With ``final_answer`` the last turn can only be a solution, and the model is told so
    one turn ahead (the training data's "take the last step to propose a solution").
    """
    if style == "chat":
        if turns_left <= 0:
            return "You have no turns left; give your answer now."
        if final_answer and turns_left == 1:
            return "You have 1 turn left: use it to give your answer as a solution."
        return f"You have {turns_left} turn{'s' if turns_left != 1 else ''} left."
    if turns_left <= 0:
        return "You have no steps left; propose your solution now."
    note = f"You have {turns_left} step{'s' if turns_left != 1 else ''} left and 1 chance to propose a solution left."
    if turns_left == 1:
        note += " This is your last step: use it to propose your solution."
    return note


def render_observation(
    result: ExecResult,
    turns_left: int | None,
    prompt: PromptOptions,
    final_answer: bool = False,
    repeated: bool = False,
    literal: bool = False,
) -> tuple[str, bool]:
    """The user message that reports an execution; returns it and whether it was cut.

    ``prompt``: its framing (``prompt_style``) and, with ``observation_hints: hint``, a
    traceback cut to the model's own frames with a hint for the common slips
    (``server.agent.error_notes``). ``literal``: the code only printed its own text
    (``literal_code: note``).
    """
    style, hints = prompt.prompt_style, prompt.observation_hints == "hint"
    body, cut = observation_body(result, trim=hints)
    extras = []
    if result.notice:
        extras.append(result.notice)
    if hints:
        extras.extend(_hints(result, body))
    if result.files:
        extras.append("Files created or changed in the workspace: " + ", ".join(result.files))
    if literal:
        extras.append(LITERAL_NOTE)
    if repeated:
        extras.append(REPEAT_NOTE)
    if turns_left is not None:
        extras.append(turns_left_note(turns_left, style, final_answer))
    return _observation_message(body, extras, style), cut


def _observation_message(body: str, extras: Sequence[str], style: PromptStyle) -> str:
    prefix = MINT_OBSERVATION_PREFIX if style == "mint" else OBSERVATION_PREFIX
    return "\n".join([f"{prefix}\n{body}", *extras])


def _hints(result: ExecResult, body: str) -> list[str]:
    """The hint lines an execution earns: one for its exception, or a reminder to print when
    its ``body`` is the empty-output marker and it wrote no file either."""
    if result.error:
        hint = error_hint(result.error)
        return [hint] if hint else []
    return [EMPTY_OUTPUT_HINT] if body == EMPTY_OUTPUT and not result.files else []


def observation_body(result: ExecResult, trim: bool = False) -> tuple[str, bool]:
    """What the code printed (output, then the error), cut to head and tail when long.

    ``trim``: the error keeps only the frames of the model's own code (``trim_traceback``).
    """
    sections = [s for s in (result.stdout, result.stderr) if s.strip()]
    if result.error:
        sections.append((trim_traceback(result.error) if trim else result.error).rstrip())
    body = "\n".join(s.rstrip("\n") for s in sections)
    body, cut = cut_middle(body)
    if not body.strip():
        body = NO_OUTPUT if result.notice else EMPTY_OUTPUT
    return body, cut
