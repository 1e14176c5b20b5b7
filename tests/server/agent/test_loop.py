"""``run_agent`` driven directly: the scripted engine and the scripted executor, no HTTP, no processes.

These pin the loop's decisions branch by branch in milliseconds; the HTTP-level tests
(test_agent_scripted.py, test_agent_policy.py) and the real-model ones (test_agent_real.py)
check the same behaviour through the real server and sandbox.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator

import pytest

from models.engine.scripted import ScriptedEngine
from sandbox.fake_executor import ScriptedExecutor
from sandbox.result import ExecResult
from server.agent.loop import AgentOptions, run_agent
from server.agent.options import LoopPolicy
from server.agent.policy import RESAMPLE_SEED, RESAMPLE_TEMPERATURE
from server.agent.steps import AgentDone, AgentEvent, StepDone, TurnDelta

TASK = [{"role": "system", "content": "You are a CodeAct agent."}, {"role": "user", "content": "What is 6 * 7?"}]


@pytest.fixture
def engine() -> Iterator[ScriptedEngine]:
    engine = ScriptedEngine()
    yield engine
    engine.close()


def drive(engine: ScriptedEngine, executor: ScriptedExecutor, **options: object) -> tuple[list[AgentEvent], list[dict]]:
    """Run the loop to its end; the events it yielded and the conversation it left."""
    messages = [dict(m) for m in TASK]

    async def collect() -> list[AgentEvent]:
        return [event async for event in run_agent(engine, messages, executor, AgentOptions(**options))]

    return asyncio.run(collect()), messages


def steps(events: list[AgentEvent]) -> list:
    return [e.step for e in events if isinstance(e, StepDone)]


def done(events: list[AgentEvent]) -> AgentDone:
    assert isinstance(events[-1], AgentDone), events[-1]
    assert sum(isinstance(e, AgentDone) for e in events) == 1
    return events[-1]


def test_code_then_solution_runs_the_code_and_reports_its_output(engine: ScriptedEngine) -> None:
    engine.enqueue("I compute it.\n<execute>print(6 * 7)</execute>", "<solution>42</solution>")
    executor = ScriptedExecutor(["42\n"])
    events, messages = drive(engine, executor)
    assert executor.ran == ["print(6 * 7)"]
    first, second = steps(events)
    assert first.action.type == "execute" and first.observation.stdout == "42\n"
    assert "42" in first.observation.text and first.observation.text in [m["content"] for m in messages]
    assert second.action.answer == "42"
    finished = done(events)
    assert (finished.finish_reason, finished.message, finished.turns) == ("solution", "42", 2)
    assert [m["role"] for m in messages[2:]] == ["assistant", "user", "assistant"]
    # The turn's text streamed as channels before its step finished.
    channels = {e.channel for e in events if isinstance(e, TurnDelta) and e.step_index == 0}
    assert {"thought", "code"} <= channels


def test_the_observation_is_the_execution_result_the_model_read(engine: ScriptedEngine) -> None:
    killed = ExecResult(stdout="partial", killed_reason="memory", state_lost=True, duration_s=1.5, files=["a.png"])
    engine.enqueue("<execute>x = [0] * 10**10</execute>", "<solution>too big</solution>")
    events, _ = drive(engine, ScriptedExecutor([killed]))
    observation = steps(events)[0].observation
    assert (observation.killed_reason, observation.state_lost, observation.files) == ("memory", True, ["a.png"])
    assert observation.duration_s == 1.5 and steps(events)[0].timings["execution_s"] == 1.5
    assert "more memory than allowed" in observation.text and "a.png" in observation.text
    assert observation.payload()["message"] == observation.text


def test_long_output_is_cut_for_the_model_and_flagged(engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print('x' * 100000)</execute>", "<solution>done</solution>")
    events, _ = drive(engine, ScriptedExecutor(["x" * 100_000]))
    observation = steps(events)[0].observation
    assert observation.truncated and "characters omitted" in observation.text
    assert len(observation.text) < 10_000 and len(observation.stdout) == 100_000


def test_a_repeat_becomes_the_answer_in_the_same_turn(engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(6 * 7)</execute>", "<execute>print(6*7)</execute>", "42</solution>")
    executor = ScriptedExecutor(default=lambda code: ExecResult(stdout="42\n"))
    events, _ = drive(engine, executor)
    repeat = steps(events)[-1]
    assert (repeat.forced, repeat.repeated_code, repeat.action.answer) == ("repeat", "print(6*7)", "42")
    assert done(events).forced_answer == "repeat" and done(events).turns == 2
    assert len(executor.ran) == 2  # the repeat ran once more, then the model answered


def test_a_repeat_with_new_output_is_not_forced(engine: ScriptedEngine) -> None:
    engine.enqueue(
        "<execute>n += 1; print(n)</execute>", "<execute>n += 1; print(n)</execute>", "<solution>2</solution>"
    )
    events, _ = drive(engine, ScriptedExecutor(["1", "2"]))
    assert [s.forced for s in steps(events)] == [None, None, None] and done(events).message == "2"


def test_without_the_policy_the_loop_runs_out_of_turns(engine: ScriptedEngine) -> None:
    engine.enqueue(*["<execute>print(42)</execute>"] * 3)
    off = LoopPolicy(on_repeat="off", final_answer=False)
    events, _ = drive(engine, ScriptedExecutor(default=lambda code: ExecResult(stdout="42")), max_turns=3, policy=off)
    assert (done(events).finish_reason, done(events).turns) == ("max_turns", 3)
    assert all(s.forced is None for s in steps(events))


def test_a_repeated_failure_is_left_out_and_the_next_turn_is_sampled(engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(F)</execute>", "<execute>print(F)</execute>", "<solution>no idea</solution>")
    error = ExecResult(error="NameError: name 'F' is not defined")
    events, messages = drive(engine, ScriptedExecutor(default=lambda code: error))
    first, repeat, sampled = steps(events)
    assert repeat.observation.repeated and repeat.forced is None and not repeat.resampled
    assert repeat.left_out and not first.left_out and not sampled.left_out
    assert sampled.resampled and not first.resampled and done(events).forced_answer is None
    # The model reads its first attempt and its error once, then the sampled turn.
    assert [m["content"] for m in messages[2:]] == [first.raw, first.observation.text, sampled.raw]
    temperatures = [(r.temperature, r.seed) for r in engine.requests]
    assert temperatures[0] == temperatures[1] == (0.0, None)
    assert temperatures[-1] == (RESAMPLE_TEMPERATURE, RESAMPLE_SEED + 2)


def test_a_request_seed_seeds_the_resampled_turn(engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(F)</execute>", "<execute>print(F)</execute>", "<solution>no idea</solution>")
    error = ExecResult(error="NameError: name 'F' is not defined")
    drive(engine, ScriptedExecutor(default=lambda code: error), seed=40, temperature=0.9)
    assert (engine.requests[-1].temperature, engine.requests[-1].seed) == (0.9, 42)


def test_a_repeat_of_its_own_literal_text_is_not_an_answer(engine: ScriptedEngine) -> None:
    label = '<execute>print("The median of the list:")</execute>'
    engine.enqueue(label, label, "<execute>print(sorted([3, 1, 2])[1])</execute>", "<solution>2</solution>")
    executor = ScriptedExecutor(["The median of the list:\n", "The median of the list:\n", "2\n"])
    events, _ = drive(engine, executor, policy=LoopPolicy(literal_code="off"))
    assert [s.forced for s in steps(events)] == [None, None, None, None]
    assert [s.resampled for s in steps(events)] == [False, False, True, False]
    assert (done(events).message, done(events).forced_answer) == ("2", None)


def test_with_note_a_repeated_failure_stays_and_is_named(engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(F)</execute>", "<execute>print(F)</execute>", "<solution>no idea</solution>")
    error = ExecResult(error="NameError: name 'F' is not defined")
    policy = LoopPolicy(on_failed_repeat="note")
    events, messages = drive(engine, ScriptedExecutor(default=lambda code: error), policy=policy)
    repeat = steps(events)[1]
    assert repeat.observation.text in [m["content"] for m in messages] and "already ran" in repeat.observation.text
    assert not any(s.resampled for s in steps(events)) and {r.temperature for r in engine.requests} == {0.0}


def test_code_answer_written_like_a_fence_runs_without_its_language_line(engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>x = 6 * 7</execute>", "python\nprint(x)\n</solution>")
    executor = ScriptedExecutor(["", "42\n"])
    events, _ = drive(engine, executor, max_turns=2)
    assert executor.ran == ["x = 6 * 7", "print(x)"] and done(events).message == "42"


def test_code_in_a_first_answer_runs_as_it_is_and_is_not_replaced(engine: ScriptedEngine) -> None:
    engine.enqueue("<solution>print(6 * 7)</solution>", "<solution>42</solution>")
    executor = ScriptedExecutor(["42\n"])
    events, _ = drive(engine, executor)
    assert executor.ran == ["print(6 * 7)"] and steps(events)[0].action.type == "execute"
    assert len(engine.requests) == 4  # two turns of two phases each: no turn taken again
    assert done(events).message == "42"


def test_a_first_answer_no_code_backed_is_left_out_once(engine: ScriptedEngine) -> None:
    engine.enqueue("<solution>Lyon</solution>", "<solution>Paris</solution>")
    events, messages = drive(engine, ScriptedExecutor([]))
    first, second = steps(events)
    assert first.left_out and second.resampled and engine.requests[-1].temperature >= 0.7
    assert (done(events).message, done(events).turns) == ("Paris", 2)
    assert "Lyon" not in engine.requests[-1].prompt and "Lyon" not in str(messages)


def test_a_first_answer_no_code_backed_is_taken_when_asked(engine: ScriptedEngine) -> None:
    engine.enqueue("<solution>Paris</solution>")
    events, _ = drive(engine, ScriptedExecutor([]), policy=LoopPolicy(unrun_answer="off"))
    assert (done(events).message, done(events).turns) == ("Paris", 1)


def test_code_fed_its_own_output_is_not_run_and_the_output_is_the_answer(engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(26.2 * 1.6)</execute>", "<execute>print(41.92 * 1.6)</execute>", "67</solution>")
    executor = ScriptedExecutor(["41.92\n"])
    events, _ = drive(engine, executor)
    assert executor.ran == ["print(26.2 * 1.6)"]  # the second code never ran
    answer = steps(events)[-1]
    assert (answer.forced, answer.action.answer, answer.overruled_answer) == ("fed_back", "41.92", "67")
    assert answer.repeated_code == "print(41.92 * 1.6)" and done(events).forced_answer == "fed_back"


def test_the_last_turn_can_only_answer(engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(6 * 7)</execute>", "42</solution>")
    events, _ = drive(engine, ScriptedExecutor(["42"]), max_turns=2)
    last = steps(events)[-1]
    assert (last.forced, last.action.answer) == ("last_turn", "42")
    # The forced turn's prompt already opened the solution tag for the model.
    assert engine.requests[-1].prompt.rstrip().endswith("<solution>")


def test_code_given_as_the_forced_answer_is_run_and_its_output_is_the_answer(engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>x = 6 * 7</execute>", "print(x)</solution>")
    executor = ScriptedExecutor(["", "42\n"])
    events, _ = drive(engine, executor, max_turns=2)
    assert executor.ran == ["x = 6 * 7", "print(x)"]
    assert done(events).message == "42" and steps(events)[-1].action.code == "print(x)"


def test_a_turn_without_an_action_ends_the_run(engine: ScriptedEngine) -> None:
    engine.enqueue("I do not know how to do that.")
    events, _ = drive(engine, ScriptedExecutor())
    assert done(events).finish_reason == "no_action" and "do not know" in done(events).message


def test_a_full_context_after_the_first_turn_ends_with_length(engine: ScriptedEngine) -> None:
    small = ScriptedEngine(context_length=200)
    try:
        small.enqueue("<execute>print(x)</execute>")
        events, _ = drive(small, ScriptedExecutor(["word " * 400]), max_tokens=100)
        finished = done(events)
        assert finished.finish_reason == "length" and finished.turns == 1
    finally:
        small.close()


def test_cancelling_the_run_interrupts_the_execution(engine: ScriptedEngine) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(code: str) -> ExecResult:
        started.set()
        release.wait(10)
        return ExecResult(stdout="late")

    executor = ScriptedExecutor([slow])
    engine.enqueue("<execute>import time; time.sleep(60)</execute>")

    async def cancel_midway() -> None:
        messages = [dict(m) for m in TASK]
        task = asyncio.ensure_future(_consume(run_agent(engine, messages, executor, AgentOptions())))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()

    asyncio.run(cancel_midway())
    assert executor.interrupted.is_set()


async def _consume(events) -> None:  # noqa: ANN001 - an async iterator of events
    async for _ in events:
        pass


def test_run_agent_fits_one_screen_and_leaves_the_messages_to_history() -> None:
    """The shape issue 26 gave the loop: a fixed step sequence in about 60 lines, and no
    ``append``/``pop``/``del`` on the messages there (``History`` is their only writer)."""
    import ast
    import inspect

    from server.agent import loop

    source = inspect.getsource(loop.run_agent)
    assert len(source.splitlines()) <= 60
    function = ast.parse(source).body[0]
    edits = [
        node
        for node in ast.walk(function)
        if (isinstance(node, ast.Attribute) and node.attr in {"append", "pop", "extend", "insert", "remove"})
        or isinstance(node, ast.Delete)
    ]
    assert edits == []
    assert "messages" not in source.split('"""')[-1].replace("History(messages)", "")


def test_thinking_gets_its_share_of_the_turn_and_an_answer_only_turn_its_own_budget(engine: ScriptedEngine) -> None:
    """Issue 27 item 4: a rambling model reaches its action after ``thought_share`` of
    ``max_tokens``, and an answer-only turn (here after a repeat) writes at most
    ``answer_tokens``: the README's example had spent 1024 tokens on one forced answer."""
    ramble = " ".join(["words"] * 400)
    engine.enqueue(
        "I compute it. <execute>print(6 * 7)</execute>",
        "<execute>print(6*7)</execute>",  # a repeat: the turn is taken again as answer-only
        "42 " + ramble + "</solution>",
    )
    executor = ScriptedExecutor(default=lambda code: ExecResult(stdout="42\n"))
    policy = LoopPolicy(thought_share=0.25, answer_tokens=20)
    events, _ = drive(engine, executor, max_tokens=400, policy=policy)
    thought, body = engine.requests[:2]
    assert thought.max_tokens == 100  # a quarter of the turn's 400
    assert body.max_tokens == 400 - 4  # what the thinking ("I compute it. ") left
    assert engine.requests[-1].max_tokens == 20  # the answer-only turn
    assert steps(events)[-1].generation_finish == "length"
    assert done(events).message.startswith("42 words") and len(done(events).message.split()) <= 20


def test_a_solution_the_model_chose_gets_the_answer_budget_too(engine: ScriptedEngine) -> None:
    engine.enqueue("It is 42. <solution>42 " + " ".join(["again"] * 100) + "</solution>")
    policy = LoopPolicy(thought_share=0.25, answer_tokens=30, unrun_answer="off")
    events, _ = drive(engine, ScriptedExecutor([]), max_tokens=400, policy=policy)
    thought, body = engine.requests
    assert (thought.max_tokens, body.max_tokens) == (100, 30)
    assert steps(events)[0].generation_finish == "length" and done(events).message.startswith("42 again")


def test_a_budget_outside_its_bounds_is_refused() -> None:
    for bad in ({"thought_share": 0}, {"thought_share": 0.75}, {"answer_tokens": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LoopPolicy(**bad)


def test_a_step_is_never_changed_after_it_is_built(engine: ScriptedEngine) -> None:
    """Steps are frozen: the loop makes a new one for a rewrite, an execution or a left-out
    turn, so a step an observer (the store, the audit log, a stream) was handed stays as it was."""
    engine.enqueue("<solution>print(6 * 7)</solution>", "<solution>42</solution>")
    events, _ = drive(engine, ScriptedExecutor([ExecResult(stdout="42\n")]))
    first = steps(events)[0]
    assert first.action.type == "execute" and first.observation is not None  # rewritten, then run
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.left_out = True  # type: ignore[misc]
