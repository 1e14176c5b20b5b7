"""The CodeAct observe-act loop: an async generator of plain step objects, no HTTP inside.

Each turn is the same fixed sequence of steps:

1. **plan** the turn (``Judge.plan``): free, or answer-only, greedy or sampled;
2. **generate** it (``_Turns.generate``), streaming its text as thought / code / answer;
3. **rewrite** it (``Judge.rewrite``): code written as a ``<solution>`` is taken as code;
4. **act**: the turn enters the history, its code runs in the session's executor
   (``_Actor``) and becomes an observation, unless the judge stops it first
   (``Judge.before_run``: it only feeds the last output back into the last code); the
   output's reaction is ``Judge.after_run``'s;
5. **react** (``Judge.after_turn``): observe, note, leave the turn out (also an answer before
   any code ran), take it again as answer-only (back to 2), or finish;
6. **record**: the history and the step reported to the caller say what happened.

The run ends on ``<solution>``, on a turn without an action, at ``max_turns``, or when the
context window is full. Every decision an option drives is a rule of
``server.agent.policy.rules``, asked by the run's ``Judge`` (which builds the facts the rules
read); the loop carries the answer out and is not edited for a new option. ``History`` is
the only writer of the messages; ``_Turns`` is the only path that generates a turn, taken
for the first time or again, and the only place that handles a full context.

Model mistakes (bad code, a malformed turn) become observations or a finish reason; our
own failures raise. Cancelling the consuming task cancels generation at the next token and
kills a running execution.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from models.engine.api import ContextOverflowError, Engine
from models.engine.chat_format import render_chatml
from models.engine.usage import Usage
from sandbox.executor import CodeExecutor, on_own_thread
from server.agent.actions import (
    EXECUTE_CLOSE,
    EXECUTE_OPEN,
    SOLUTION_CLOSE,
    SOLUTION_OPEN,
    ChannelSplitter,
    clean_code,
    parse_turn,
)
from server.agent.options import LoopPolicy
from server.agent.policy import RESAMPLE_SEED, RESAMPLE_TEMPERATURE, Judge, Reaction, Rewrite, TurnPlan
from server.agent.prompts import observation_body, render_observation
from server.agent.steps import Action, AgentDone, AgentEvent, AgentFinish, Observation, Step, StepDone, TurnDelta
from server.agent.turns import StructureMode, TurnGenerator, TurnSettings


@dataclass(frozen=True)
class AgentOptions:
    """Per-request knobs of the loop."""

    max_turns: int = 5
    max_tokens: int | None = 1024  # per turn
    temperature: float = 0.0
    top_p: float = 0.95
    seed: int | None = None
    execution_timeout: float = 60.0
    structure: StructureMode = "phased"
    policy: LoopPolicy = field(default_factory=LoopPolicy)
    #: A full engine queue makes even the first generation wait rather than refuse the run:
    #: a sample run beside the request's first one, which was admitted (``server.agent.consensus``).
    waits_in_queue: bool = False


DEFAULT_TURN_TOKENS = 1024


async def run_agent(
    engine: Engine,
    messages: list[dict[str, str]],
    executor: CodeExecutor,
    options: AgentOptions,
    first_step_index: int = 0,
) -> AsyncIterator[AgentEvent]:
    """Drive the loop over ``messages`` (appended to in place) until it finishes."""
    history = History(messages)
    judge = Judge(options.policy, options.max_turns, follow_up=first_step_index > 0)
    turns = _Turns(engine, history, options, first_step_index)
    actor = _Actor(executor, options, judge)
    after_left_out = False
    for turn in range(options.max_turns):
        turns_left = options.max_turns - turn - 1
        # 1. plan
        plan: TurnPlan | None = judge.plan(turn, after_left_out)
        step: Step | None = None  # the attempt a turn taken again replaces
        while plan is not None:
            # 2. generate (again, for a turn taken again)
            async for delta in turns.generate(turn, plan, replacing=step):
                yield delta
            if turns.context_full is not None:
                yield turns.context_full
                return
            step = turns.step
            # 3. rewrite
            change = judge.rewrite(step.action.type, step.action.answer, plan.forced)
            step = _take_as(change, step, judge.last_value)
            # 4. act: the turn is in the history before its code runs (a run stopped meanwhile keeps it)
            history.add_turn(step.raw)
            step, output = await actor.act(step, change, turns_left)
            # 5. react
            reaction = judge.after_turn(step.action.type, step.generation_finish, plan.forced, turns_left, output)
            plan = reaction.answer_plan()
            if plan is not None:
                history.take_back_turn()  # the model asked again for what it has already seen
        # 6. record
        assert step is not None
        if reaction.kind == "leave_out":
            history.take_back_turn()  # the next turn is sampled without it
            step = replace(step, left_out=True)
        elif reaction.kind != "finish":
            assert step.observation is not None
            history.add_observation(step.observation.text)
        turns.record(step)
        yield StepDone(step)
        if reaction.finish is not None:
            yield turns.done(reaction.finish, step, turn + 1)
            return
        after_left_out = reaction.kind == "leave_out"
    yield turns.done("max_turns", None, options.max_turns)


class History:
    """The only writer of a run's messages (a session's list, appended to in place).

    The session's message list is the model's memory: every turn renders it whole as ChatML
    (each turn only appends, so the engine's prefix cache re-uses everything before it). The
    loop never edits that list itself; it tells ``History`` what happened, and ``History``
    knows which message is whose:

    * ``add_turn``: an assistant turn enters *before* its code runs, so a run stopped during
      the execution (a cancel, a client tool call) keeps the turn it was acting on;
    * ``take_back_turn``: that turn leaves again (a repeat taken again as an answer, or left
      out so that the next turn is sampled). It removes the message ``add_turn`` added, found
      by its position, and refuses if anything came after it;
    * ``add_observation``: what the model reads next, as a user message.
    """

    def __init__(self, messages: list[dict[str, str]]) -> None:
        self.messages = messages
        self._turn: int | None = None  # where the turn being acted on sits

    def prompt(self) -> str:
        """The whole conversation as the model reads it, ready for the next assistant turn."""
        return render_chatml(self.messages)

    def add_turn(self, raw: str) -> None:
        self._turn = len(self.messages)
        self.messages.append({"role": "assistant", "content": raw})

    def take_back_turn(self) -> None:
        """Remove the turn ``add_turn`` added last; nothing may have followed it."""
        if self._turn is None or self._turn != len(self.messages) - 1:
            raise RuntimeError("no turn to take back: it was never added or something followed it")
        del self.messages[self._turn]
        self._turn = None

    def add_observation(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})
        self._turn = None


class _Turns:
    """The one path that generates a turn, the first time or again, and the one place that
    handles a context that no longer fits; it sums the run's usage.

    The first generation of a request that does not fit raises (nothing ran, the request
    fails as a whole); any later one ends the run with ``length`` (``context_full``).
    """

    def __init__(self, engine: Engine, history: History, options: AgentOptions, first_index: int) -> None:
        self.engine, self.history, self.options, self.first_index = engine, history, options, first_index
        self.usage = Usage()  # the recorded steps' (``record``)
        self.last_text = ""  # the thinking of the latest turn: the message if no answer comes
        self.context_full: AgentDone | None = None
        self._step: Step | None = None

    @property
    def step(self) -> Step:
        """The step of the turn generated last."""
        assert self._step is not None
        return self._step

    async def generate(self, turn: int, plan: TurnPlan, replacing: Step | None = None) -> AsyncIterator[TurnDelta]:
        """Stream turn ``turn`` under ``plan``; then ``step`` (or ``context_full``) is set.

        ``replacing``: the attempt this turn is taken again for. Only the new answer streams
        (the client has seen the rest), and the step carries that attempt's cost.
        """
        index = self.first_index + turn
        turn_gen = TurnGenerator(
            self.engine,
            self.history.prompt(),
            self._settings(plan, turn),
            first_turn=turn == 0 and not self.options.waits_in_queue,  # only a first turn is refused
            solution_only=plan.forced is not None,
        )
        try:
            async for delta in _stream_turn(turn_gen, index):
                if replacing is None or delta.channel == "answer":
                    yield delta
        except ContextOverflowError as exc:
            if turn == 0 and replacing is None:
                raise
            self.context_full = AgentDone("length", self.last_text, turn, self.usage, str(exc))
            return
        self._step = _step(index, turn_gen, plan, replacing)
        self.last_text = self._step.thought

    def record(self, step: Step) -> None:
        """``step`` is final (what it replaced is in its cost): the run's usage counts it."""
        self.usage = self.usage + step.usage

    def done(self, reason: AgentFinish, step: Step | None, turns: int) -> AgentDone:
        """The end of the run: ``step``'s answer (or its thinking), else the last thinking."""
        if step is None:
            return AgentDone(reason, self.last_text, turns, self.usage)
        message = (step.action.answer or "") if step.action.type == "solution" else step.thought
        return AgentDone(reason, message, turns, self.usage, forced_answer=step.forced)

    def _settings(self, plan: TurnPlan, turn: int) -> TurnSettings:
        """A sampled turn: at least ``RESAMPLE_TEMPERATURE``, seeded (``on_failed_repeat``)."""
        options = self.options
        temperature, seed = options.temperature, options.seed
        if plan.sampled:
            temperature = max(temperature, RESAMPLE_TEMPERATURE)
            seed = RESAMPLE_SEED + turn if seed is None else seed + turn
        return TurnSettings(
            max_tokens=options.max_tokens or DEFAULT_TURN_TOKENS,
            temperature=temperature,
            top_p=options.top_p,
            seed=seed,
            mode=options.structure,
            options=options.policy,
        )


class _Actor:
    """Runs a turn's code and renders what the model reads of it; the judge says what the
    code and its output lead to."""

    def __init__(self, executor: CodeExecutor, options: AgentOptions, judge: Judge) -> None:
        self.executor, self.options, self.judge = executor, options, judge

    async def act(self, step: Step, change: Rewrite, turns_left: int) -> tuple[Step, Reaction | None]:
        """Run the step's code, if it has some: the step with its observation, and how its
        output reacts (None: no code ran).

        An answer-only turn that wrote code (``answer_from_code``): what the code prints is
        the answer; if it prints nothing or fails, the code stays the answer. Code the judge
        stops before it runs (fed its own output back) does not run.
        """
        if step.action.type == "execute":
            code = step.action.code or ""
            before = self.judge.before_run(code)
            if before is not None:
                return step, before
        elif change == "answer_from_code":
            code = clean_code(step.action.answer or "")
        else:
            return step, None
        observation, reaction = await self._run(code, turns_left)
        action = step.action
        printed = observation.stdout.strip()
        if change == "answer_from_code" and observation.error is None and not observation.timed_out and printed:
            action = Action("solution", code=code, answer=printed)
        timings = {**step.timings, "execution_s": observation.duration_s}
        return replace(step, observation=observation, timings=timings, action=action), reaction

    async def _run(self, code: str, turns_left: int) -> tuple[Observation, Reaction]:
        """Run code off the event loop; if our task is cancelled, kill the execution too."""
        try:
            result = await on_own_thread(self.executor.run, code, self.options.execution_timeout, name="sandbox-run")
        except asyncio.CancelledError:
            self.executor.interrupt()
            raise
        policy = self.options.policy
        ran = self.judge.after_run(code, result, observation_body(result)[0], turns_left)
        text, cut = render_observation(
            result,
            turns_left,
            policy,
            final_answer=policy.forces_final_answer(self.options.max_turns),
            repeated=ran.reaction.kind == "note",
            literal=ran.notes_literal,
        )
        return Observation.of(result, text, cut=cut, repeated=ran.repeated), ran.reaction


async def _stream_turn(turn_gen: TurnGenerator, index: int) -> AsyncIterator[TurnDelta]:
    """The turn's text as thought / code / answer deltas; timing lands in the result."""
    splitter = ChannelSplitter()
    started = time.perf_counter()
    async for piece in turn_gen.stream():
        for channel, text in splitter.feed(piece):
            yield TurnDelta(index, channel, text)
    for channel, text in splitter.flush():
        yield TurnDelta(index, channel, text)
    turn_gen.generation_s = time.perf_counter() - started


def _take_as(change: Rewrite, step: Step, last_value: str | None) -> Step:
    """The step (and the turn the history will show) as ``rewrite`` decided.

    ``as_execute``: a ``<solution>`` holding code, as the ``<execute>`` it meant.
    ``answer_from_output``: a forced answer that misread the one value above it answers with
    that value; the model's words stay on the step (``overruled_answer``), and the history
    shows the answer given, so a follow-up reads what the client was told.
    """
    if change == "as_execute":
        raw = step.raw.replace(SOLUTION_OPEN, EXECUTE_OPEN, 1).replace(SOLUTION_CLOSE, EXECUTE_CLOSE, 1)
        return replace(step, raw=raw, action=Action("execute", code=clean_code(step.action.answer or "")))
    if change == "answer_from_output" and last_value is not None:
        return replace(
            step,
            overruled_answer=step.action.answer,
            action=Action("solution", answer=last_value),
            raw=f"{SOLUTION_OPEN}{last_value}{SOLUTION_CLOSE}",
        )
    return step


def _step(index: int, turn_gen: TurnGenerator, plan: TurnPlan, replacing: Step | None) -> Step:
    """The step record of a generated turn (``replacing``: the attempt it replaces, whose
    generation and execution time, prompt and tokens it carries too)."""
    result = turn_gen.result
    parsed = parse_turn(result.text)
    timings = {
        "queued_s": result.queued_s,
        "time_to_first_token_s": result.time_to_first_token_s,
        "generation_s": turn_gen.generation_s,
    }
    usage = replace(result.usage, generation_s=turn_gen.generation_s)  # the turn's wall time
    phases = list(result.phases)
    if replacing is not None:
        timings["generation_s"] += replacing.timings.get("generation_s", 0.0)
        timings["execution_s"] = replacing.timings.get("execution_s", 0.0)
        usage = replacing.usage.then(usage)
        phases = replacing.phases + phases
    return Step(
        index=index,
        thought=parsed.thought,
        action=Action(parsed.type, parsed.code, parsed.answer),
        raw=result.text,
        turn_usage=usage,
        generation_finish=result.finish_reason,
        phases=phases,
        timings=timings,
        forced=plan.forced if parsed.type == "solution" else None,
        repeated_code=None if replacing is None else replacing.action.code,
        resampled=plan.sampled,
    )
