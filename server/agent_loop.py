"""The CodeAct observe-act loop: an async generator of plain step objects, no HTTP inside.

Each turn renders the whole conversation as ChatML (every turn only appends, so the
engine's prefix cache re-uses everything before it), generates one assistant turn under
the action grammar, parses it, runs ``<execute>`` code in the session's executor and
appends the output as the next user message. It ends on ``<solution>``, on a turn without
an action, at ``max_turns``, or when the context window is full.

Model mistakes (bad code, a malformed turn) become observations or a finish reason; our
own failures raise. Cancelling the consuming task cancels generation at the next token and
kills a running execution.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from models.chat_format import render_chatml
from models.engine_api import ContextOverflowError, Engine
from server.actions import ChannelSplitter, parse_turn
from server.agent_steps import Action, AgentDone, AgentEvent, Observation, Step, StepDone, TurnDelta
from server.prompts import ObservationParts, render_observation
from server.turn_generation import StructureMode, TurnGenerator, TurnSettings


class CodeExecutor(Protocol):
    """The executor seam (``sandbox.Sandbox`` implements it)."""

    def run(self, code: str, timeout: float | None = None):  # noqa: ANN201 - ExecResult
        ...

    def interrupt(self) -> None: ...


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


DEFAULT_TURN_TOKENS = 1024


async def run_agent(
    engine: Engine,
    messages: list[dict[str, str]],
    executor: CodeExecutor,
    options: AgentOptions,
    first_step_index: int = 0,
) -> AsyncIterator[AgentEvent]:
    """Drive the loop over ``messages`` (appended to in place) until it finishes."""
    prompt_tokens = completion_tokens = 0
    last_text = ""
    for turn in range(options.max_turns):
        index = first_step_index + turn
        turn_gen = TurnGenerator(
            engine,
            render_chatml(messages),
            TurnSettings(
                max_tokens=options.max_tokens or DEFAULT_TURN_TOKENS,
                temperature=options.temperature,
                top_p=options.top_p,
                seed=options.seed,
                mode=options.structure,
            ),
            first_turn=turn == 0,
        )
        splitter = ChannelSplitter()
        started = time.perf_counter()
        try:
            async for piece in turn_gen.stream():
                for channel, text in splitter.feed(piece):
                    yield TurnDelta(index, channel, text)
        except ContextOverflowError as exc:
            if turn == 0:
                raise
            yield AgentDone("length", last_text, turn, prompt_tokens, completion_tokens, str(exc))
            return
        for channel, text in splitter.flush():
            yield TurnDelta(index, channel, text)
        result = turn_gen.result
        generated_s = time.perf_counter() - started
        prompt_tokens += result.prompt_tokens
        completion_tokens += result.completion_tokens
        raw = result.text
        messages.append({"role": "assistant", "content": raw})
        parsed = parse_turn(raw)
        step = Step(
            index=index,
            thought=parsed.thought,
            action=Action(parsed.type, parsed.code, parsed.answer),
            raw=raw,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            cached_prompt_tokens=result.cached_prompt_tokens,
            generation_finish=result.finish_reason,
            phases=result.phases,
            timings={
                "queued_s": result.queued_s,
                "time_to_first_token_s": result.time_to_first_token_s,
                "generation_s": generated_s,
            },
        )
        last_text = parsed.thought
        if parsed.type == "solution":
            yield StepDone(step)
            yield AgentDone(
                "solution", parsed.answer or "", turn + 1, prompt_tokens, completion_tokens
            )
            return
        if parsed.type == "none":
            yield StepDone(step)
            reason = "length" if result.finish_reason == "length" else "no_action"
            yield AgentDone(reason, parsed.thought, turn + 1, prompt_tokens, completion_tokens)
            return
        turns_left = options.max_turns - turn - 1
        step.observation = await _execute(executor, parsed.code or "", options, turns_left)
        step.timings["execution_s"] = step.observation.duration_s
        messages.append({"role": "user", "content": step.observation.text})
        yield StepDone(step)
    yield AgentDone(
        "max_turns", last_text, options.max_turns, prompt_tokens, completion_tokens
    )


async def _execute(
    executor: CodeExecutor, code: str, options: AgentOptions, turns_left: int
) -> Observation:
    """Run code off the event loop; if our task is cancelled, kill the execution too."""
    try:
        result = await asyncio.to_thread(executor.run, code, options.execution_timeout)
    except asyncio.CancelledError:
        executor.interrupt()
        raise
    text, cut = render_observation(
        ObservationParts(
            stdout=result.stdout,
            stderr=result.stderr,
            error=result.error,
            notice=result.notice,
            files=result.files,
        ),
        turns_left,
    )
    return Observation(
        stdout=result.stdout,
        stderr=result.stderr,
        error=result.error,
        timed_out=result.timed_out,
        truncated=result.truncated or cut,
        files=list(result.files),
        killed_reason=result.killed_reason,
        state_lost=result.state_lost,
        duration_s=result.duration_s,
        text=text,
    )
