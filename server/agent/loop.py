"""The CodeAct observe-act loop: an async generator of plain step objects, no HTTP inside.

Each turn renders the whole conversation as ChatML (every turn only appends, so the
engine's prefix cache re-uses everything before it), generates one assistant turn under
the action grammar, parses it, runs ``<execute>`` code in the session's executor and
appends the output as the next user message. It ends on ``<solution>``, on a turn without
an action, at ``max_turns``, or when the context window is full. What it does about a
repeated action and the last turn is the request's ``LoopPolicy`` (``server.agent.policy``):
by default a repeat becomes the answer in the same turn and the last turn can only answer.

Model mistakes (bad code, a malformed turn) become observations or a finish reason; our
own failures raise. Cancelling the consuming task cancels generation at the next token and
kills a running execution.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from models.engine.api import ContextOverflowError, Engine
from models.engine.chat_format import render_chatml
from sandbox.executor import CodeExecutor
from sandbox.result import ExecResult
from server.agent.actions import (
    EXECUTE_CLOSE,
    EXECUTE_OPEN,
    SOLUTION_CLOSE,
    SOLUTION_OPEN,
    Channel,
    ChannelSplitter,
    clean_code,
    parse_turn,
)
from server.agent.policy import (
    RESAMPLE_SEED,
    RESAMPLE_TEMPERATURE,
    ForcedReason,
    LoopPolicy,
    RepeatTracker,
    looks_like_code,
    prints_only_literals,
)
from server.agent.prompts import observation_body, render_observation
from server.agent.steps import Action, AgentDone, AgentEvent, AgentFinish, Observation, Step, StepDone, TurnDelta
from server.agent.turns import StructureMode, TurnGenerator, TurnResult, TurnSettings


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


DEFAULT_TURN_TOKENS = 1024


class _Usage:
    """Tokens summed over every generation of one request."""

    def __init__(self) -> None:
        self.prompt = self.completion = 0

    def add(self, result: TurnResult) -> None:
        self.prompt += result.prompt_tokens
        self.completion += result.completion_tokens


async def run_agent(
    engine: Engine,
    messages: list[dict[str, str]],
    executor: CodeExecutor,
    options: AgentOptions,
    first_step_index: int = 0,
) -> AsyncIterator[AgentEvent]:
    """Drive the loop over ``messages`` (appended to in place) until it finishes."""
    usage = _Usage()
    policy = options.policy
    repeats = RepeatTracker()
    last_text = ""
    resample = False  # the last turn repeated a failure: sample this one
    for turn in range(options.max_turns):
        index = first_step_index + turn
        forced: ForcedReason | None = "last_turn" if policy.forces_last_turn(turn, options.max_turns) else None
        sampled = resample and forced is None
        # A forced answer opens <solution> at once: thinking first lets small models talk
        # themselves back into running code.
        turn_gen = _turn_generator(engine, messages, options, turn, solution_only=forced is not None, sampled=sampled)
        try:
            async for delta in _stream_turn(turn_gen, index):
                yield delta
        except ContextOverflowError as exc:
            if turn == 0:
                raise
            yield _context_full(exc, last_text, turn, usage)
            return
        usage.add(turn_gen.result)
        step = _step(index, turn_gen, forced)
        step.resampled, resample = sampled, False
        last_text = step.thought
        turns_left = options.max_turns - turn - 1
        code_answer = _code_as_answer(step, policy)
        if code_answer and forced is None:
            step = _solution_as_execute(step)  # the model meant to run it
        # In the history before the code runs: a run stopped during execution keeps its turn.
        messages.append({"role": "assistant", "content": step.raw})
        if code_answer and forced is not None:
            await _answer_from_code(step, executor, options, turns_left, repeats)
        if step.action.type == "execute":
            step.observation = await _execute(executor, step.action.code or "", options, turns_left, repeats)
            step.timings["execution_s"] = step.observation.duration_s
            if _answers_by_repeat(step, policy):
                # The model asked again for what it has already seen: this turn becomes its
                # answer, given right after the observation that showed it.
                messages.pop()
                retake = _Retake(_turn_generator(engine, messages, options, turn, solution_only=True), index, "answer")
                async for delta in retake.stream():
                    yield delta
                if retake.overflow is not None:
                    yield _context_full(retake.overflow, last_text, turn, usage)
                    return
                repeated_code = step.action.code
                step = retake.step(usage, "repeat", earlier=step)
                step.repeated_code = repeated_code
                messages.append({"role": "assistant", "content": step.raw})
                if _code_as_answer(step, policy):
                    await _answer_from_code(step, executor, options, turns_left, repeats)
        if _resamples(step, policy) and turn + 1 < options.max_turns:
            # The model repeated a failure: the next turn is sampled from the history
            # before the repeat, which the model therefore does not read.
            messages.pop()
            resample = step.left_out = True
            yield StepDone(step)
            continue
        if step.action.type == "solution":
            yield StepDone(step)
            yield AgentDone(
                "solution",
                step.action.answer or "",
                turn + 1,
                usage.prompt,
                usage.completion,
                forced_answer=step.forced,
            )
            return
        if step.action.type == "none":
            yield StepDone(step)
            reason: AgentFinish = "length" if step.generation_finish == "length" else "no_action"
            yield AgentDone(reason, step.thought, turn + 1, usage.prompt, usage.completion)
            return
        assert step.observation is not None
        messages.append({"role": "user", "content": step.observation.text})
        yield StepDone(step)
    yield AgentDone("max_turns", last_text, options.max_turns, usage.prompt, usage.completion)


class _Retake:
    """A turn generated again in place of the one just streamed (an answer after a repeat):
    only its new ``channel`` streams, since the client
    has seen the rest; a context that no longer fits is kept in ``overflow``, not raised."""

    def __init__(self, turn_gen: TurnGenerator, index: int, channel: Channel) -> None:
        self.turn_gen = turn_gen
        self.index = index
        self.channel = channel
        self.overflow: ContextOverflowError | None = None

    async def stream(self) -> AsyncIterator[TurnDelta]:
        try:
            async for delta in _stream_turn(self.turn_gen, self.index):
                if delta.channel == self.channel:
                    yield delta
        except ContextOverflowError as exc:
            self.overflow = exc

    def step(self, usage: _Usage, forced: ForcedReason | None, earlier: Step) -> Step:
        """The step of the turn taken again, carrying ``earlier``'s cost; usage counted."""
        usage.add(self.turn_gen.result)
        return _step(self.index, self.turn_gen, forced, earlier=earlier)


def _context_full(exc: ContextOverflowError, last_text: str, turn: int, usage: _Usage) -> AgentDone:
    """The end of a run whose next generation no longer fits the context window."""
    return AgentDone("length", last_text, turn, usage.prompt, usage.completion, str(exc))


def _turn_generator(
    engine: Engine,
    messages: list[dict[str, str]],
    options: AgentOptions,
    turn: int,
    *,
    solution_only: bool = False,
    sampled: bool = False,
) -> TurnGenerator:
    """``sampled``: at least ``RESAMPLE_TEMPERATURE``, seeded (``on_failed_repeat``)."""
    temperature, seed = options.temperature, options.seed
    if sampled:
        temperature = max(temperature, RESAMPLE_TEMPERATURE)
        seed = RESAMPLE_SEED + turn if seed is None else seed + turn
    return TurnGenerator(
        engine,
        render_chatml(messages),
        TurnSettings(
            max_tokens=options.max_tokens or DEFAULT_TURN_TOKENS,
            temperature=temperature,
            top_p=options.top_p,
            seed=seed,
            mode=options.structure,
            fenced_code=options.policy.fenced_code == "execute",
        ),
        first_turn=turn == 0,
        solution_only=solution_only,
    )


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


def _answers_by_repeat(step: Step, policy: LoopPolicy) -> bool:
    """A repeat the policy answers: same code, same output, and the output is an answer."""
    observation = step.observation
    assert observation is not None
    return observation.repeated and policy.on_repeat == "answer" and not _shows_nothing(step.action.code, observation)


def _resamples(step: Step, policy: LoopPolicy) -> bool:
    """A repeat that is no answer, and the policy samples the next turn instead."""
    observation = step.observation
    if step.action.type != "execute" or observation is None or not observation.repeated:
        return False
    resampling = policy.on_repeat == "answer" and policy.on_failed_repeat == "resample"
    return resampling and _shows_nothing(step.action.code, observation)


def _shows_nothing(code: str | None, result: ExecResult) -> bool:
    """Output that answers nothing: a failure, or only the code's own literal text."""
    failed = result.error is not None or result.timed_out or result.killed_reason is not None
    return failed or prints_only_literals(code or "")


def _code_as_answer(step: Step, policy: LoopPolicy) -> bool:
    if step.action.type != "solution" or policy.code_answer != "run":
        return False
    return looks_like_code(clean_code(step.action.answer or ""))


def _solution_as_execute(step: Step) -> Step:
    """A ``<solution>`` holding code, as the ``<execute>`` it meant (the history shows that)."""
    code = clean_code(step.action.answer or "")
    step.raw = step.raw.replace(SOLUTION_OPEN, EXECUTE_OPEN, 1).replace(SOLUTION_CLOSE, EXECUTE_CLOSE, 1)
    step.action = Action("execute", code=code)
    return step


async def _answer_from_code(
    step: Step, executor: CodeExecutor, options: AgentOptions, turns_left: int, repeats: RepeatTracker
) -> None:
    """On a solution-only turn the model wrote code: what it prints is the answer."""
    code = clean_code(step.action.answer or "")
    observation = await _execute(executor, code, options, turns_left, repeats)
    step.observation = observation
    step.timings["execution_s"] = observation.duration_s
    printed = observation.stdout.strip()
    if observation.error is None and not observation.timed_out and printed:
        step.action = Action("solution", code=code, answer=printed)


def _step(index: int, turn_gen: TurnGenerator, forced: ForcedReason | None, earlier: Step | None = None) -> Step:
    """The step record of a generated turn (``earlier``: the attempt it replaces, whose
    generation and execution time it carries too)."""
    result = turn_gen.result
    parsed = parse_turn(result.text)
    timings = {
        "queued_s": result.queued_s,
        "time_to_first_token_s": result.time_to_first_token_s,
        "generation_s": turn_gen.generation_s,
    }
    prompt_tokens, completion_tokens = result.prompt_tokens, result.completion_tokens
    phases = list(result.phases)
    if earlier is not None:
        timings["generation_s"] += earlier.timings.get("generation_s", 0.0)
        timings["execution_s"] = earlier.timings.get("execution_s", 0.0)
        prompt_tokens, completion_tokens = earlier.prompt_tokens, earlier.completion_tokens + completion_tokens
        phases = earlier.phases + phases
    return Step(
        index=index,
        thought=parsed.thought,
        action=Action(parsed.type, parsed.code, parsed.answer),
        raw=result.text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached_prompt_tokens=(earlier or result).cached_prompt_tokens,
        generation_finish=result.finish_reason,
        phases=phases,
        timings=timings,
        forced=forced if parsed.type == "solution" else None,
    )


async def _execute(
    executor: CodeExecutor,
    code: str,
    options: AgentOptions,
    turns_left: int,
    repeats: RepeatTracker,
) -> Observation:
    """Run code off the event loop; if our task is cancelled, kill the execution too."""
    try:
        result = await asyncio.to_thread(executor.run, code, options.execution_timeout)
    except asyncio.CancelledError:
        executor.interrupt()
        raise
    policy = options.policy
    repeated = repeats.is_repeat(code, observation_body(result)[0])
    no_answer = policy.on_repeat == "answer" and policy.on_failed_repeat == "note" and _shows_nothing(code, result)
    note = repeated and (policy.on_repeat == "note" or no_answer)
    text, cut = render_observation(
        result,
        turns_left,
        style=policy.prompt_style,
        final_answer=policy.forces_final_answer(options.max_turns),
        repeated=note,
    )
    return Observation.of(result, text, cut=cut, repeated=repeated)
