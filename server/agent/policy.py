"""How the loop copes with the habits of small models, so that a run ends with an answer.

Small models at temperature 0 answer a task's code with the same code again, turn after
turn, long after its output showed the answer; and asked for nothing in particular at the
last turn, they run code once more and the run ends with no answer at all. The loop
therefore has a policy, each part a named option so that its effect can be measured on
and off (``benchmarks/agent_quality.py``, figures in ``benchmarks/RESULTS.md``). The
options are declared once, with their defaults and descriptions, in ``server.agent.options``
(``LoopPolicy``); this is why each exists:

* ``on_repeat``: what to do when the model runs code it already ran in this request and
  gets the same output again (same code by syntax tree, so comments and spacing do not
  matter; same output, so code whose result changed, e.g. after the files or random state
  changed, is not a repeat).
  ``"answer"`` turns that very turn into a solution-only turn: the repeat is dropped from
  the history and ``<solution>`` is opened right after the observation that already
  showed the output, so the repeat costs no further turn. A repeat whose output is an
  error is not an answer, nor is a repeat of code that only prints text written in it
  (``print("Median:")``: its output shows nothing the model did not already write):
  ``on_failed_repeat`` decides what those become. ``"note"`` runs the repeat and says so
  in the observation; ``"off"`` does nothing.
* ``on_failed_repeat``: what ``on_repeat: "answer"`` does with a repeat that is no answer
  (an error again, or only the code's own literal text). At temperature 0 the same history
  gives the same turn, so a model that repeated a failure once repeats it to the end of
  the budget. ``"resample"`` leaves the repeat out of the history the model reads and
  samples the next turn (temperature ``RESAMPLE_TEMPERATURE``, a fixed seed unless the
  request set one, so runs stay reproducible); the repeat is still reported as a step, and
  the sampled one says ``resampled``. ``"note"`` keeps the repeat and tells the model it
  repeated itself.
* ``final_answer``: the last turn of the budget may only be a ``<solution>`` (when the
  budget allows more than one turn), so no run ends at ``max_turns`` with nothing.
* ``fenced_code``: small models often write their code in a Markdown fence (```python)
  instead of ``<execute>``; ``"execute"`` takes the fence as the opening of an
  ``<execute>`` block (and its closing fence as the close), and the history shows the
  turn in the CodeAct format, so the model sees its own turns done right. ``"off"``
  leaves such a turn as thinking.
* ``code_answer``: a ``<solution>`` whose body is code (a call or statements, not a value)
  is a model that meant to run it. ``"run"`` runs it as an ``<execute>`` action (on a
  solution-only turn, what it prints becomes the answer); ``"off"`` takes it as the answer.
* ``forced_answer``: on an answer-only turn the model writes ``<solution>`` with no thought,
  and small models were seen writing their prior there, not the output right above it
  (``Monday`` under ``Tuesday``, ``229`` under ``1229``: 4 of 28 such answers in one quality
  run). ``"output"`` holds such an answer against the last execution's output when that was
  one short value (``one_value``) and answers with the value where they disagree
  (``states_value``); ``"model"`` keeps the model's answer.
* ``prompt_style``: ``"mint"`` frames messages as CodeActAgent's training trajectories did
  (``Task:``, ``Observation:``, steps and solution chances left, the last step reserved for
  a solution); ``"chat"`` as the reference chat demo did (``Execution Output:``).

* ``code_plan``: the system prompt's advice on how to work. ``"steps"`` (write a little code
  at a time, check its output) is the default again (issue 35): on the suite's held-out half
  (46 tasks nobody tuned on) it solved 33/46 on Qwen2.5-Coder-1.5B against 25/46 for
  ``"plan"``, and 15/46 against 13/46 on the 0.5B. ``"plan"`` (think the whole computation
  through, then write code that carries out all of it) had won issue 27's tuning on the 0.5B
  and the whole suite (19/47 against 16/47), but on tasks it was not tuned on the models
  then did the arithmetic in the thought and printed its pieces (``print(250 + 1)`` for a sum
  of squares, ``print(3140125 / 6)``), twice the tokens per turn on the 1.5B. ``"whole"`` (a
  sentence of plan, then complete code) made the dev model stop thinking at all and write
  one-line guesses (``print(30)`` for the 30th Fibonacci number): 3 of the suite's first 10
  tasks against 7.
* ``thought_share`` and ``answer_tokens`` (issue 27): the token budgets inside a turn.
  Thinking may use its share of ``max_tokens`` (at most 384 tokens), then the model must
  choose its action; a ``<solution>`` may use ``answer_tokens``. Without the answer budget a
  small model that rambles spends the whole turn on it: the README's example on the
  embedded model wrote a 768-token "answer" of one sentence repeated with a changing number.
  A smaller thinking share is no cure: at a quarter (96 of the suite's 384 tokens) the dev
  model solved 3 of the suite's first 8 tasks against 6 at half, cut off while it planned.
* ``literal_code`` (issue 27): the dev model's most common wrong start is code that computes
  nothing: ``print("Counting trailing zeros in 125!...")``, ``print(30)`` for the 30th
  Fibonacci number, ``print("2023-05-17")`` for the date 1000 days later (12 of the quality
  suite's 47 tasks under ``code_plan: plan``, 9 of them failed). Its output reads like a
  result: the model answers it or prints it again, and at temperature 0 the turn after it
  repeats it word for word (a note in the observation did not change that turn). So
  ``"resample"`` leaves such a turn out at first sight and samples the next, which is what
  ``on_failed_repeat`` does one turn later; ``"note"`` shows the output with a note that the
  code computed nothing; ``"off"`` shows it alone. On those 12 tasks ``resample`` solved 6,
  ``note`` 3 of 11, ``off`` 3.
* ``fed_back_output`` (issue 27): small models read their own output as the next input.
  ``(98.6 - 32) * 5 / 9`` prints ``37.0``, and the next turn runs ``(37.0 - 32) * 5 / 9``,
  then converts that again, until the turns run out and the last output is the answer
  (``fahrenheit``, ``marathon_km``, ``digit_product``, ``hex`` in one quality run). Code
  that is the last code again with the one value it printed in place of its input
  (``feeds_output_back``: the same syntax tree but for constants, every changed constant
  now that value) is therefore not run: ``"answer"`` takes the turn again as an
  answer-only turn after the output it would have consumed, as ``on_repeat: "answer"``
  does for a repeat. In the done-when's run it forced 5 answers, 3 of them right where the
  old defaults had none. A computation meant to be applied twice, one turn at a time, is
  cut short by it; ``"off"`` runs the code.
* ``unrun_answer`` (issue 27): a ``<solution>`` before any code that computes something ran,
  on a session's first request, was wrong in every one of the 17 runs that had one in the
  quality suite's two main arms (``collatz_27`` answered ``7``, ``kmh_to_ms`` ``90000``).
  ``"resample"`` leaves it out of what the model reads and samples the next turn, once a
  request, as ``literal_code: "resample"`` does for code that computes nothing; the model
  does not read its guess. ``unverified_answer`` (removed in issue 26) kept the guess in
  the history and asked for code after it, which wrote code that agreed with the guess.
  On the 8 tasks it touched, a probe solved 2 that no arm had solved. ``"off"`` takes the
  answer.
* ``samples`` (issue 27): k runs of a request that starts a session, the answer they agree
  on most (``server.agent.consensus``: the runs, and the vote with its tolerance).

Two options that measured nothing were removed (issue 26): ``restate_task`` (the task
restated in every observation: a loss) and ``unverified_answer`` (a first answer no code
backed, questioned or replaced by code: no better than taking it). ``benchmarks/RESULTS.md``
keeps their figures.

A solution the policy forced is flagged (``Step.forced``, ``AgentDone.forced_answer``) with
why: ``"repeat"``, ``"fed_back"`` or ``"last_turn"``.

Every decision an option drives is a pure function here, so that it can be read and tested
as a table without an engine (``tests/server/agent/test_policy_table.py``); the loop
(``server.agent.loop``) only carries them out, in a fixed order each turn:

* ``plan_turn``: how the turn is generated (free, answer-only and why, sampled);
* ``rewrite``: what a generated turn is taken as (kept, code in a ``<solution>`` run as
  ``<execute>``, on an answer-only turn run for the answer it prints, or a forced answer
  replaced by the one value the last execution printed);
* ``react_to_code`` (before code runs), ``react_to_output``, ``answers_unrun`` and
  ``react``: what the loop does next, a ``Reaction``: observe, observe with the repeat
  note, leave the turn out and sample the next, take the turn again as answer-only, or
  finish.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Literal

from sandbox.result import ExecResult
from server.agent.actions import ActionType, clean_code
from server.agent.options import LoopPolicy

ForcedReason = Literal["repeat", "fed_back", "last_turn"]
FinishReason = Literal["solution", "no_action", "length"]
_CELL_NAME = re.compile(r"<cell-\d+>")
#: Sampling for the turn after a failed repeat: enough to leave a loop, little enough to
#: stay on the task. The seed keeps a temperature-0 run reproducible.
RESAMPLE_TEMPERATURE = 0.7
RESAMPLE_SEED = 1

#: How a forced answer is explained to people (transcript, terminal, web page).
FORCED_NOTES: dict[str, str] = {
    "repeat": "answer forced: the model repeated code whose output it had already seen",
    "fed_back": "answer forced: the model ran its code again on the output it had printed",
    "last_turn": "answer forced: the turn limit was reached",
}


def code_key(code: str) -> str:
    """What makes two pieces of code "the same": their syntax tree, else their stripped lines."""
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError):
        return "\n".join(line.rstrip() for line in code.strip().splitlines())


class RepeatTracker:
    """Remembers what each distinct piece of code printed in this request."""

    def __init__(self) -> None:
        self._outputs: dict[str, str] = {}

    def is_repeat(self, code: str, output: str) -> bool:
        """Record ``code``'s output; True when the same code already gave the same output.

        Tracebacks name the cell (``<cell-3>``), which differs on every run: not output.
        """
        key = code_key(code)
        output = _CELL_NAME.sub("<cell>", output)
        repeated = self._outputs.get(key) == output
        self._outputs[key] = output
        return repeated


def prints_only_literals(code: str) -> bool:
    """Whether every statement is a ``print`` of constants (or a bare constant): code that
    computes nothing, so its output only repeats what the model wrote into it."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    if not tree.body:
        return False
    for statement in tree.body:
        if not isinstance(statement, ast.Expr):
            return False
        value = statement.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "print":
            arguments = [*value.args, *(keyword.value for keyword in value.keywords)]
        else:
            arguments = [value]
        if not all(_is_literal(argument) for argument in arguments):
            return False
    return True


def _is_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return True
    return isinstance(node, ast.JoinedStr) and all(isinstance(part, ast.Constant) for part in node.values)


def feeds_output_back(code: str, last_code: str | None, last_value: str | None) -> bool:
    """Whether ``code`` is ``last_code`` again, run on what that printed (``fed_back_output``).

    The same syntax tree but for its constants, and every constant that changed now holds
    ``last_value``, the one short value ``last_code`` printed: ``(98.6 - 32) * 5 / 9``
    printed ``37.0``, then ``(37.0 - 32) * 5 / 9``. Small models read their own output as
    the next input and convert 37 °C again, until the turns run out.
    """
    if last_code is None or last_value is None:
        return False
    new, old = _shape_and_constants(code), _shape_and_constants(last_code)
    if new is None or old is None or new[0] != old[0]:
        return False
    changed = [n for n, o in zip(new[1], old[1], strict=True) if repr(n) != repr(o)]
    return bool(changed) and all(_holds_value(constant, last_value) for constant in changed)


def _shape_and_constants(code: str) -> tuple[str, list[object]] | None:
    """The code's syntax tree with its constants blanked, and those constants in tree order."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    constants: list[object] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            constants.append(node.value)
            node.value = None
    return ast.dump(tree), constants


def _holds_value(constant: object, value: str) -> bool:
    if isinstance(constant, str):
        return constant.strip() == value.strip()
    if isinstance(constant, bool) or not isinstance(constant, int | float):
        return False
    wanted = numbers_in(value)
    return len(wanted) == 1 and same_number(constant, wanted[0])


_CODE_NODES = (
    ast.Call,
    ast.Import,
    ast.ImportFrom,
    ast.For,
    ast.While,
    ast.With,
    ast.FunctionDef,
    ast.ClassDef,
    ast.Lambda,
    ast.ListComp,
    ast.GeneratorExp,
)


def looks_like_code(answer: str) -> bool:
    """Whether a solution's body is code to run (calls or statements), not a value.

    ``907``, ``Tuesday``, ``apple, banana``, ``x = 5`` or ``2**100 % 997`` are values (a
    constant, a name, a tuple, an assignment, arithmetic); ``print(x)``, several statements
    or an import are code. Prose does not parse, so it is never code.
    """
    try:
        tree = ast.parse(answer.strip())
    except (SyntaxError, ValueError):
        return False
    return len(tree.body) > 1 or any(isinstance(node, _CODE_NODES) for node in ast.walk(tree))


# -- the decisions, as pure functions -----------------------------------------------------
@dataclass(frozen=True)
class TurnPlan:
    """How a turn is generated: free, or answer-only (``forced`` says why); greedy or sampled."""

    forced: ForcedReason | None = None
    sampled: bool = False


def plan_turn(policy: LoopPolicy, turn: int, max_turns: int, after_left_out: bool) -> TurnPlan:
    """The plan of turn ``turn`` (0-based); ``after_left_out``: the turn before was left out.

    A forced answer opens ``<solution>`` at once (thinking first lets small models talk
    themselves back into running code), and is never sampled.
    """
    forced: ForcedReason | None = "last_turn" if policy.forces_last_turn(turn, max_turns) else None
    return TurnPlan(forced, sampled=after_left_out and forced is None)


Rewrite = Literal["keep", "as_execute", "answer_from_code", "answer_from_output"]


def rewrite(
    policy: LoopPolicy,
    action: ActionType,
    answer: str | None,
    forced: ForcedReason | None,
    last_value: str | None = None,
) -> Rewrite:
    """What a generated turn is taken as (``code_answer``, ``forced_answer``).

    A ``<solution>`` whose body is code is a model that meant to run it: on a free turn it
    becomes that ``<execute>`` (``"as_execute"``); on an answer-only turn it runs and what
    it prints is the answer (``"answer_from_code"``). A forced answer that disagrees with
    ``last_value``, the one short value the last execution printed, is replaced by it
    (``"answer_from_output"``).
    """
    if action != "solution":
        return "keep"
    if policy.code_answer == "run" and looks_like_code(clean_code(answer or "")):
        return "as_execute" if forced is None else "answer_from_code"
    if forced is not None and policy.forced_answer == "output" and last_value is not None:
        return "keep" if states_value(answer or "", last_value) else "answer_from_output"
    return "keep"


#: An output this short, on one line, is one value a forced answer can be held against.
ONE_VALUE_CHARS = 40
VALUE_TOLERANCE = 1e-6
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?")


def one_value(result: ExecResult) -> str | None:
    """What a clean execution printed, when that is one short line; else None."""
    return printed_value(result.stdout, result.error, result.timed_out)


def printed_value(stdout: str, error: str | None, timed_out: bool) -> str | None:
    """``one_value`` from an execution's parts (a recorded step's observation has them too)."""
    printed = stdout.strip()
    if error is not None or timed_out or not printed or "\n" in printed:
        return None
    return printed if len(printed) <= ONE_VALUE_CHARS else None


def numbers_in(text: str) -> list[float]:
    """Every number written in ``text`` (thousands separators allowed)."""
    return [float(m.group().replace(",", "")) for m in _NUMBER.finditer(text)]


def same_number(a: float, b: float) -> bool:
    """Two numbers a forced answer or fed-back code may write differently (``37`` for ``37.0``)."""
    return math.isclose(a, b, rel_tol=VALUE_TOLERANCE, abs_tol=VALUE_TOLERANCE)


def states_value(answer: str, value: str) -> bool:
    """Whether ``answer`` says ``value``: the same number within a tolerance when the value
    holds one number (``1229``, ``The average age is: 40.6``), else the value's text."""
    wanted = numbers_in(value)
    if len(wanted) == 1:
        return any(same_number(n, wanted[0]) for n in numbers_in(answer))
    return _plain(value) in _plain(answer)


def _plain(text: str) -> str:
    return text.strip().strip("`'\".").casefold()


ReactionKind = Literal["observe", "note", "leave_out", "answer_only", "finish"]


@dataclass(frozen=True)
class Reaction:
    """What the loop does after a turn acted.

    ``observe``: its observation goes into the history, the next turn reads it; ``note``:
    the same, with the repeat note in the observation; ``leave_out``: the turn leaves the
    history and the next turn is sampled; ``answer_only``: the turn is taken again as an
    answer-only turn (``forced`` says why), ``<solution>`` opened right after the
    observation the model already read; ``finish``: the run ends, for ``finish``'s reason.
    """

    kind: ReactionKind
    finish: FinishReason | None = None
    forced: ForcedReason | None = None

    def answer_plan(self) -> TurnPlan | None:
        """The plan of the turn taken again, if this reaction takes it again."""
        return TurnPlan(forced=self.forced) if self.kind == "answer_only" else None


OBSERVE, NOTE, LEAVE_OUT = Reaction("observe"), Reaction("note"), Reaction("leave_out")
#: A repeat taken again as an answer; code fed its own output, taken as an answer unrun.
ANSWER_ONLY = Reaction("answer_only", forced="repeat")
ANSWER_FED_BACK = Reaction("answer_only", forced="fed_back")


def _failed(result: ExecResult) -> bool:
    return result.error is not None or result.timed_out or result.killed_reason is not None


def shows_nothing(code: str, result: ExecResult) -> bool:
    """Output that answers nothing: a failure, or only the code's own literal text."""
    return _failed(result) or prints_only_literals(code)


def computes_nothing(code: str, result: ExecResult) -> bool:
    """Code that ran cleanly and only printed its own text, which the model may otherwise
    take as a result (``literal_code``)."""
    return not _failed(result) and prints_only_literals(code)


def notes_literal_code(policy: LoopPolicy, literal: bool) -> bool:
    """Whether the observation says the code computed nothing (``literal_code: note``);
    ``literal``: ``computes_nothing`` of the execution."""
    return policy.literal_code == "note" and literal


def react_to_output(
    policy: LoopPolicy, repeated: bool, answers_nothing: bool, turns_left: int, literal: bool = False
) -> Reaction:
    """What an execution's output leads to (``on_repeat``, ``on_failed_repeat``, ``literal_code``).

    ``repeated``: the same code already printed the same output in this request;
    ``answers_nothing``: ``shows_nothing`` of it; ``literal``: ``computes_nothing`` of it.
    A turn cannot be left out on the last turn: there is no next turn to sample.
    """
    if literal and policy.literal_code == "resample" and turns_left > 0:
        return LEAVE_OUT
    if not repeated or policy.on_repeat == "off":
        return OBSERVE
    if policy.on_repeat == "note":
        return NOTE
    if not answers_nothing:
        return ANSWER_ONLY
    if policy.on_failed_repeat == "note":
        return NOTE
    return LEAVE_OUT if turns_left > 0 else OBSERVE


def react_to_code(policy: LoopPolicy, fed_back: bool) -> Reaction | None:
    """What code leads to before it runs (``fed_back_output``); None: run it.

    ``fed_back``: ``feeds_output_back`` of it. Such code is not run: the turn is taken
    again as an answer-only turn after the output it would have consumed.
    """
    return ANSWER_FED_BACK if fed_back and policy.fed_back_output == "answer" else None


def answers_unrun(
    policy: LoopPolicy, action: ActionType, forced: ForcedReason | None, backed: bool, turns_left: int
) -> bool:
    """Whether a turn is a ``<solution>`` to leave out, the next turn sampled (``unrun_answer: resample``).

    ``backed``: code already ran in this run, or the session has earlier turns, or this
    run already left out such an answer (at first sight only); ``forced``: the answer was
    asked for. A turn cannot be left out on the last turn: there is no next turn to sample.
    """
    if action != "solution" or forced is not None or backed:
        return False
    return policy.unrun_answer == "resample" and turns_left > 0


def react(action: ActionType, generation_finish: str, output: Reaction | None, unrun: bool = False) -> Reaction:
    """What the loop does after a turn: a solution (unless ``unrun``: ``answers_unrun`` of it,
    then it is left out) or a turn without an action finishes the run; code goes on as its
    output decided (``output``, from ``react_to_output`` or ``react_to_code``)."""
    if action == "solution":
        return LEAVE_OUT if unrun else Reaction("finish", "solution")
    if action == "none":
        return Reaction("finish", "length" if generation_finish == "length" else "no_action")
    assert output is not None, "an <execute> turn reacts to its output"
    return output
