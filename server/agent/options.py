"""The loop's options, declared once: each is a field of ``LoopPolicy`` with its default and
its description, and everything else that names an option is made from that field.

* the server settings ``agent_<name>`` (so the ``--agent-<name>`` flags, the
  ``CODEACT_AGENT_<NAME>`` env vars and ``--help``): ``setting_fields``;
* the ``/v1/agent`` request fields ``<name>`` (null = the server's setting), in the request
  schema with the same description: ``request_fields``;
* the README's table of them: ``markdown_table``, which ``tests/test_readme.py`` compares
  with the README, so the table cannot drift either (``python -m server.agent.options``
  prints it).

Options are grouped by the code that reads them (issue 38): ``ReactionOptions`` (what the
loop does about a step: ``server.agent.policy``), ``PromptOptions`` (what the model reads:
``server.agent.prompts``), ``TurnOptions`` (how a turn is generated:
``server.agent.turns``) and ``RunOptions`` (``samples``: how many runs a request makes,
``server.agent.consensus``, around the loop rather than in it). ``LoopPolicy`` is all of
them; each reader is typed by its group and handed the whole policy.

Adding an option is one field in its group and the code that honours it (for a reaction:
one rule in ``server.agent.policy.rules``).
What each option does, and why it exists, is in ``server.agent.policy``'s module doc.
A field's bounds (``ge``/``le``) travel with it to the setting and the request field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

RepeatPolicy = Literal["answer", "note", "off"]
FailedRepeatPolicy = Literal["resample", "note"]
FencePolicy = Literal["execute", "off"]
CodeAnswerPolicy = Literal["run", "off"]
ForcedAnswerPolicy = Literal["output", "model"]
PromptStyle = Literal["mint", "chat"]
CodePlan = Literal["steps", "plan", "whole"]
LiteralCodePolicy = Literal["note", "resample", "off"]
FedBackPolicy = Literal["answer", "off"]
UnrunAnswerPolicy = Literal["resample", "off"]
ObservationHints = Literal["hint", "off"]

SETTING_PREFIX = "agent_"


def measured(evidence: str, section: str) -> dict[str, Any]:
    """An option's evidence, kept in its declaration: what it gained, on which model and tasks,
    and the ``benchmarks/RESULTS.md`` section with the runs and their commands (a heading
    there: ``tests/test_readme.py`` checks it exists); the README's table shows both."""
    return {"measured": evidence, "section": section}


#: The RESULTS.md sections the options' evidence is in.
MECHANISMS = "What changed, each mechanism measured on and off"
BUDGETS_AND_SAMPLES = "Right answers: the prompt, the thought budget and samples (issue 27, items 2-5)"
TWO_MODELS = "Issue 35 — two models, a held-out half: what generalizes"
BOTH_HALVES = "Both halves at today's defaults, and error observations (`observation_hints`), one arm per process"

#: The evidence of the options measured before issue 35 measured on two models.
BEFORE_TWO_MODELS = measured("0.5B dev model, whole suite (issues 13-26); not re-measured on two models", MECHANISMS)


class _OptionGroup(BaseModel):
    """A group of options: frozen (a run's policy never changes under it), no unknown names."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ReactionOptions(_OptionGroup):
    """What the loop does about a step: read by ``server.agent.policy`` (the judge and its rules)."""

    on_repeat: RepeatPolicy = Field(
        "answer",
        json_schema_extra=BEFORE_TWO_MODELS,
        description="the same code (by syntax tree) printing the same output again in a request: "
        "`answer` makes that turn an answer-only turn, `<solution>` opened right after the "
        "observation that showed the output (a repeat that answers nothing goes to "
        "`on_failed_repeat`); `note` only points it out in the observation; `off` does nothing",
    )
    on_failed_repeat: FailedRepeatPolicy = Field(
        "resample",
        json_schema_extra=BEFORE_TWO_MODELS,
        description="with `on_repeat: answer`, a repeat that answers nothing (the same error "
        'again, or code that only prints its own literal text, like `print("Median:")`): '
        "`resample` leaves it out of what the model reads and samples the next turn (temperature "
        "0.7, a fixed seed unless the request sets one; the step says `resampled`), since at "
        "temperature 0 the same history gives the same turn; `note` keeps it and points it out",
    )
    final_answer: bool = Field(
        True,
        json_schema_extra=BEFORE_TWO_MODELS,
        description="the last turn of a budget of two or more can only be a `<solution>`, so no "
        "run ends at `max_turns` with nothing (the response flags forced answers)",
    )
    code_answer: CodeAnswerPolicy = Field(
        "run",
        json_schema_extra=BEFORE_TWO_MODELS,
        description="a `<solution>` holding code (calls, statements; not a value): `run` runs it "
        "as the `<execute>` it meant, and on an answer-only turn what it prints is the answer; "
        "`off` takes the code as the answer",
    )
    forced_answer: ForcedAnswerPolicy = Field(
        "output",
        json_schema_extra=measured(
            "held-out half (issue 35), with the new defaults: `output` 33/46, `model` 28/46 on the 1.5B; "
            "15/46 and 13/46 on the 0.5B",
            TWO_MODELS,
        ),
        description="an answer-only turn whose answer disagrees with the one short value the last "
        "execution printed (numbers within a tolerance): `output` answers with that value (the "
        "step keeps the model's words in `overruled_answer`); `model` keeps the model's answer",
    )
    literal_code: LiteralCodePolicy = Field(
        "resample",
        json_schema_extra=measured(
            "held-out half (issue 35), with the new defaults: `resample` 15/46, `off` 10/46 on the 0.5B; "
            "33/46 either way on the 1.5B (the same tasks)",
            TWO_MODELS,
        ),
        description="code that computes nothing, only prints text or values written in it "
        '(`print("Counting zeros...")`, `print(30)`): `resample` leaves it out of what the model '
        "reads and samples the next turn (as `on_failed_repeat: resample` does, a turn earlier; "
        "the step says `left_out`); `note` shows its output with a note that it computed nothing "
        "and asks for code that computes the answer; `off` shows the output alone",
    )
    fed_back_output: FedBackPolicy = Field(
        "answer",
        json_schema_extra=measured(
            "issue 27: 0.5B dev model, whole suite; issue 35: off alone on the 1.5B's held-out half, the same "
            "46 answers (it never fired there); not re-measured on the 0.5B's halves",
            BOTH_HALVES,
        ),
        description="code that is the last code again with the one value it printed written in "
        "place of its input (`(98.6 - 32) * 5 / 9` printed `37.0`, then `(37.0 - 32) * 5 / 9`): "
        "`answer` does not run it and makes that turn an answer-only turn after the output it "
        "would have consumed (as `on_repeat: answer` does; the step says `forced: fed_back`); "
        "`off` runs it",
    )
    unrun_answer: UnrunAnswerPolicy = Field(
        "resample",
        json_schema_extra=measured(
            "issue 35, off alone on the held-out half: `resample` 13/46, `off` 10/46 on the 0.5B; the same 46 "
            "answers on the 1.5B (it never fired there)",
            BOTH_HALVES,
        ),
        description="a `<solution>` before any code that computes something ran, on a "
        "session's first request (a guess: no code backs it): `resample` leaves it out of what "
        "the model reads and samples the next turn, once a request (the step says `left_out`); "
        "`off` takes it",
    )

    def forces_final_answer(self, max_turns: int) -> bool:
        """Whether the last turn of this budget may only answer: a budget of two or more.

        A budget of one turn is left free: a caller who allows a single action asked for
        one execution or one answer, and forcing would forbid running code at all.
        """
        return self.final_answer and max_turns > 1

    def forces_last_turn(self, turn: int, max_turns: int) -> bool:
        """Whether ``turn`` (0-based) is that answer-only last turn."""
        return self.forces_final_answer(max_turns) and turn == max_turns - 1


class PromptOptions(_OptionGroup):
    """What the model is told: read where the system prompt and the observations are written
    (``server.agent.prompts``)."""

    prompt_style: PromptStyle = Field(
        "mint",
        json_schema_extra=BEFORE_TWO_MODELS,
        description="how tasks and observations are framed: `mint` as in CodeActAgent's training "
        "data (`Task:` before the task, `Observation:` before output, steps and solution chances "
        "left, the last step reserved for the answer); `chat` as in its chat demo "
        "(`Execution Output:`)",
    )
    code_plan: CodePlan = Field(
        "steps",
        json_schema_extra=measured(
            "held-out half (issue 35): `steps` 33/46, `plan` 25/46 on the 1.5B; 15/46 and 13/46 on the 0.5B",
            TWO_MODELS,
        ),
        description="how the system prompt asks the model to work: `steps` writes a little code "
        "at a time and checks its output; `plan` thinks the whole computation through, then "
        "writes code that carries out all of it (issue 27's default: the models then did the "
        "arithmetic in the thought); `whole` says in a sentence what the code will compute, then "
        "writes complete code (the model stopped thinking)",
    )
    observation_hints: ObservationHints = Field(
        "off",
        json_schema_extra=measured(
            "issue 35, `hint` against `off`: held-out half 13/46 and 13/46 on the 0.5B, 32/46 and 33/46 on "
            "the 1.5B; tuning half 15/50 and 15/50 on the 0.5B, 30/50 and 30/50 on the 1.5B, with 25-50 % "
            "more tokens per solved task on the 1.5B: opt-in",
            BOTH_HALVES,
        ),
        description="what an observation adds to raw output: `hint` cuts the library's frames from "
        "a traceback (the model's own lines and the exception stay) and adds a one-line hint for a "
        "file that is not there, a module that is not installed or a name not defined, and asks "
        "code that printed nothing to print; `off` shows the output and the traceback as they are",
    )


class TurnOptions(_OptionGroup):
    """How a turn is generated: read by ``server.agent.turns.TurnGenerator``."""

    fenced_code: FencePolicy = Field(
        "execute",
        json_schema_extra=BEFORE_TWO_MODELS,
        description="a Markdown code fence (```python) in the thinking: `execute` opens an "
        "`<execute>` block there, closed by the closing fence (the history shows the turn in the "
        "CodeAct format); `off` leaves it as thinking",
    )
    thought_share: float = Field(
        0.5,
        json_schema_extra=measured(
            "issue 27: 0.5B dev model, whole suite; not yet re-measured on two models", BUDGETS_AND_SAMPLES
        ),
        gt=0,
        le=0.5,
        description="the share of a turn's `max_tokens` that its thinking may use (at most 384 "
        "tokens); then the action phase begins (`<execute>` or `<solution>`, the model's choice), "
        "so a model that rambles reaches its action",
    )
    answer_tokens: int = Field(
        256,
        json_schema_extra=measured(
            "issue 27: 0.5B dev model, whole suite; not yet re-measured on two models", BUDGETS_AND_SAMPLES
        ),
        ge=1,
        description="the token budget of a `<solution>` (at most `max_tokens`): an answer, not an "
        "essay; a small model that starts to ramble in its answer stops there (the turn reports "
        "`length`)",
    )


class RunOptions(_OptionGroup):
    """How many runs a request makes: read by the request (``server.agent.consensus``), never by the loop."""

    samples: int = Field(
        1,
        json_schema_extra=measured(
            "issue 27: 0.5B dev model, whole suite; not yet re-measured on two models", BUDGETS_AND_SAMPLES
        ),
        ge=1,
        le=8,
        description="runs of the same task side by side (1 to 8), each in its own session; the "
        "answer is the one most runs agree on (numbers within a tolerance; a tie goes to the first "
        "run, which keeps the request's temperature), with the agreement and every run's steps in "
        "the response. Costs `samples` runs; only a request that starts a session samples",
    )


class LoopPolicy(RunOptions, TurnOptions, PromptOptions, ReactionOptions):
    """The policy of one request: every option, each declared once in the group of the code
    that reads it (defaults are what measured best; see ``server.agent.policy``). A reader
    takes its group's type and is handed the whole policy, so no option is copied field by
    field and no default is written twice."""

    def overridden(self, values: dict[str, Any]) -> LoopPolicy:
        """This policy with the options a request set (``None``: not set, keep this one's)."""
        return self.model_validate({**self.model_dump(), **{k: v for k, v in values.items() if v is not None}})


def option_names() -> tuple[str, ...]:
    return tuple(LoopPolicy.model_fields)


def setting_fields() -> dict[str, Any]:
    """``agent_<name>`` settings fields (``create_model`` definitions): same type, default, description."""
    return {
        SETTING_PREFIX + name: (_bounded(info), Field(info.default, description=info.description))
        for name, info in LoopPolicy.model_fields.items()
    }


def request_fields() -> dict[str, Any]:
    """Optional request fields of the same names and descriptions; null keeps the server's setting."""
    fields: dict[str, Any] = {}
    for name, info in LoopPolicy.model_fields.items():
        annotation: Any = _bounded(info)
        fields[name] = (annotation | None, Field(None, description=f"{info.description} (default: {_flag(name)})"))
    return fields


def markdown_table() -> str:
    """The README's table of the options: flag and env var, request field, default, what it
    does, and what it was measured to gain (its declaration's ``measured``)."""
    lines = ["| setting, env var (request field) | default | what it does | measured |", "|---|---|---|---|"]
    for name, info in LoopPolicy.model_fields.items():
        env = "CODEACT_" + (SETTING_PREFIX + name).upper()
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        evidence = f"{extra['measured']} (RESULTS.md: {extra['section']})" if extra else ""
        lines.append(f"| `{_flag(name)}`, `{env}` (`{name}`) | {_default(info)} | {info.description} | {evidence} |")
    return "\n".join(lines) + "\n"


def _bounded(info: FieldInfo) -> Any:
    """The field's type with its bounds (``ge``, ``le``...), so a setting or a request field
    out of range is refused where it is given, naming it."""
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _flag(name: str) -> str:
    return "--" + (SETTING_PREFIX + name).replace("_", "-")


def _default(info: FieldInfo) -> str:
    if isinstance(info.default, bool):
        return "on" if info.default else "off"
    return f"`{info.default}`"


if __name__ == "__main__":
    print(markdown_table(), end="")
