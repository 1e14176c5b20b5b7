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
* ``observation_hints`` (issue 35): one of the levers the literature finds to carry across
  models, an error observation that names the error and the line and keeps the task's terms
  in view (``server.agent.error_notes``). ``"hint"`` cuts the library's frames from a
  traceback, so the model reads its own failing line and the exception rather than six frames
  of ``pandas`` internals, and adds one line for the slips a traceback does not resolve: a
  file the task never gave (models read ``inventory.csv`` when the table was in the task's
  text, and retried it until the turns ran out), a module that cannot be installed, a name
  not defined; code that printed nothing is asked to print. ``"off"`` shows the raw output,
  and is the default: measured one arm per process, ``hint`` changed no verdict on the
  0.5B's held-out half (13/46 either way) or the 1.5B's tuning half (30/50 either way), and
  on the 1.5B's held-out half it won one task and lost two (32/46 against 33/46), at half
  again the completion tokens per solved task. The file hint did what it says (the models
  then wrote the table into their code) but the code they wrote was cut off or mistyped.
* ``samples`` (issue 27): k runs of a request that starts a session, the answer they agree
  on most (``server.agent.consensus``: the runs, and the vote with its tolerance).

Two options that measured nothing were removed (issue 26): ``restate_task`` (the task
restated in every observation: a loss) and ``unverified_answer`` (a first answer no code
backed, questioned or replaced by code: no better than taking it). ``benchmarks/RESULTS.md``
keeps their figures.

A solution the policy forced is flagged (``Step.forced``, ``AgentDone.forced_answer``) with
why: ``"repeat"``, ``"fed_back"`` or ``"last_turn"``.

Every decision an option drives is pure, so that it can be read and tested as a table
without an engine (``tests/server/agent/test_policy_table.py``); the loop
(``server.agent.loop``) only carries them out, asking the run's ``Judge`` in a fixed order
each turn:

* ``plan``: how the turn is generated (free, answer-only and why, sampled);
* ``rewrite``: what a generated turn is taken as (kept, code in a ``<solution>`` run as
  ``<execute>``, on an answer-only turn run for the answer it prints, or a forced answer
  replaced by the one value the last execution printed);
* ``before_run``, ``after_run``, ``after_turn``: what the loop does next, a ``Reaction``
  chosen by the first rule of that stage that holds (``rules.RULES``): observe, observe
  with the repeat note, leave the turn out and sample the next, take the turn again as
  answer-only, or finish. A new reaction option is one ``LoopPolicy`` field, one rule and at
  most one ``Facts`` field.

The folder: ``values`` (whether an answer states a value: one tolerance for the forced
answer, the fed-back check and the vote), ``detectors`` (what code and its output are),
``decisions`` (plans, rewrites and the reactions), ``rules`` (the facts a decision reads and
the ordered table of rules that decides), ``judge`` (one run's policy: builds the facts,
asks the rules). The loop needs ``Judge`` and the plan and reaction types from here.
"""

from __future__ import annotations

from server.agent.policy.decisions import (
    ANSWER_FED_BACK,
    ANSWER_ONLY,
    FORCED_NOTES,
    LEAVE_OUT,
    NOTE,
    OBSERVE,
    RESAMPLE_SEED,
    RESAMPLE_TEMPERATURE,
    FinishReason,
    ForcedReason,
    Reaction,
    ReactionKind,
    Rewrite,
    TurnPlan,
    plan_turn,
    rewrite,
)
from server.agent.policy.detectors import (
    RepeatTracker,
    code_key,
    failed,
    feeds_output_back,
    looks_like_code,
    prints_only_literals,
)
from server.agent.policy.judge import (
    Judge,
    Ran,
)
from server.agent.policy.rules import (
    RULES,
    Facts,
    Rule,
    decide,
)
from server.agent.policy.values import (
    ONE_VALUE_CHARS,
    agree,
    numbers_in,
    one_value,
    printed_value,
    same_number,
    states_value,
)

__all__ = [
    "ANSWER_FED_BACK",
    "ANSWER_ONLY",
    "FORCED_NOTES",
    "Facts",
    "FinishReason",
    "ForcedReason",
    "Judge",
    "LEAVE_OUT",
    "NOTE",
    "OBSERVE",
    "ONE_VALUE_CHARS",
    "RESAMPLE_SEED",
    "RESAMPLE_TEMPERATURE",
    "RULES",
    "Ran",
    "Reaction",
    "ReactionKind",
    "RepeatTracker",
    "Rewrite",
    "Rule",
    "TurnPlan",
    "agree",
    "code_key",
    "decide",
    "failed",
    "feeds_output_back",
    "looks_like_code",
    "numbers_in",
    "one_value",
    "plan_turn",
    "printed_value",
    "prints_only_literals",
    "rewrite",
    "same_number",
    "states_value",
]
