"""The loop policy that makes small models finish, pinned with a scripted model over real HTTP.

Each mechanism of ``server.agent.policy`` is exercised through ``POST /v1/agent`` with the
real sandbox: a repeated action becomes the answer in the same turn, code whose output
changed is not a repeat, the last turn can only be a solution, and a forced answer is
flagged in the JSON answer, the stream, the transcript and the terminal view.
"""

from __future__ import annotations

import io

import httpx
import openai
import pytest

from models.engine.scripted import ScriptedEngine
from server.agent.actions import SOLUTION_CLOSE
from server.agent.options import LoopPolicy
from server.agent.policy import RepeatTracker, code_key, prints_only_literals
from server.agent.prompts import LITERAL_NOTE, REPEAT_NOTE
from server.agent.turns import body_grammar
from server.cli.run import TerminalView
from server.settings import Settings
from tests.live_server import LiveServer
from tests.scripted_agent import MODEL, agent


def session(server: LiveServer, session_id: str) -> dict:
    return httpx.get(f"{server.url}/v1/agent/sessions/{session_id}").json()


# -- pure pieces ---------------------------------------------------------------------------
def test_code_key_ignores_comments_and_spacing_but_not_meaning() -> None:
    assert code_key("print(6*7)") == code_key("print( 6 * 7 )  # again\n\n")
    assert code_key("print(6*7)") != code_key("print(7*6)")
    assert code_key("def f(:") == code_key("def f(:  \n")  # not Python: compared as lines


def test_repeat_needs_the_same_code_and_the_same_output() -> None:
    tracker = RepeatTracker()
    assert not tracker.is_repeat("print(x)", "1")
    assert not tracker.is_repeat("print(x)", "2")  # the state changed: not a repeat
    assert tracker.is_repeat("print( x )", "2")
    assert not tracker.is_repeat("print(y)", "2")


def test_last_turn_is_forced_only_for_budgets_above_one() -> None:
    policy = LoopPolicy()
    assert [policy.forces_last_turn(t, 3) for t in range(3)] == [False, False, True]
    assert not policy.forces_last_turn(0, 1)
    assert not LoopPolicy(final_answer=False).forces_last_turn(2, 3)


# -- repeated actions ----------------------------------------------------------------------
def test_a_repeated_action_becomes_the_answer_in_the_same_turn(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue(
        "Let me compute it.\n<execute>\nprint(6 * 7)\n</execute>",
        "Let me check it again.\n<execute>\nprint(6*7)  # once more\n</execute>",
        "42</solution>",  # what the model writes once <solution> is opened for it
    )
    reply = agent(server)
    run = reply["agent"]
    assert run["finish_reason"] == "solution" and run["forced_answer"] == "repeat"
    assert reply["choices"][0]["message"]["content"] == "42"
    assert run["turns"] == 2, "the repeat must not cost a turn of its own"
    first, second = run["steps"]
    assert first["observation"]["stdout"] == "42\n" and first["observation"]["repeated"] is False
    assert second["action"] == {"type": "solution", "answer": "42"}
    assert second["forced"] == "repeat"
    assert second["repeated_code"] == "print(6*7)  # once more"
    # <solution> was opened right after the observation that showed 42, under the answer grammar.
    answer_request = engine.requests[-1]
    assert answer_request.prompt.endswith("Observation:\n42\n" + answer_request.prompt.split("Observation:\n42\n")[-1])
    assert answer_request.prompt.endswith("<|im_start|>assistant\n<solution>")
    assert answer_request.grammar == body_grammar(SOLUTION_CLOSE)
    # The model's history holds the answer, not the repeated code and a second observation.
    history = session(server, run["session_id"])["messages"]
    assert history[-1] == {"role": "assistant", "content": "<solution>42</solution>"}
    assert sum(m["content"].startswith("Observation:") for m in history if m["role"] == "user") == 1


def test_a_forced_answer_that_misreads_the_output_above_it_becomes_that_output(
    server: LiveServer, engine: ScriptedEngine
) -> None:
    """Issue 27: the answer-only turn wrote its prior (229) under an output of 1229."""
    count = "<execute>\nprint(sum(all(p % d for d in range(2, int(p**0.5) + 1)) for p in range(2, 10000)))\n</execute>"
    engine.enqueue(count, count, "229</solution>")
    reply = agent(server)
    run = reply["agent"]
    assert run["forced_answer"] == "repeat"
    assert reply["choices"][0]["message"]["content"] == "1229"
    answer = run["steps"][-1]
    assert answer["action"] == {"type": "solution", "answer": "1229"}
    assert answer["overruled_answer"] == "229"
    history = session(server, run["session_id"])["messages"]
    assert history[-1] == {"role": "assistant", "content": "<solution>1229</solution>"}  # what was answered


def test_a_forced_answer_is_the_model_s_own_when_asked(server: LiveServer, engine: ScriptedEngine) -> None:
    computed = "<execute>print(1000 + 229)</execute>"  # computed: a repeat of a bare literal answers nothing
    engine.enqueue(computed, computed, "229</solution>")
    reply = agent(server, forced_answer="model")
    assert reply["choices"][0]["message"]["content"] == "229"
    assert reply["agent"]["steps"][-1]["overruled_answer"] is None
    # ... and one that agrees is left as the model wrote it.
    engine.enqueue(computed, computed, "There are 1229.</solution>")
    reply = agent(server)
    assert reply["choices"][0]["message"]["content"] == "There are 1229."
    assert reply["agent"]["steps"][-1]["overruled_answer"] is None


def test_code_that_prints_only_its_own_text_computes_nothing() -> None:
    assert prints_only_literals('print("Median of [1, 2, 3]:")\nprint(f"step 2")\n"note"')
    assert prints_only_literals("print('a', 1, sep=', ')")
    for computes in ("print(6 * 7)", "print(f'{x}')", "print(hex(48879))", "x = 1", "print('a')\nprint(y)", ""):
        assert not prints_only_literals(computes), computes
    assert not prints_only_literals("print(")  # not Python: not a finding about its output


def test_a_repeated_error_is_left_out_and_the_next_turn_sampled(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(F)</execute>", "<execute>print(F)</execute>", "<solution>no idea</solution>")
    run = agent(server)["agent"]
    first, second, third = run["steps"]
    assert second["observation"]["repeated"] is True and REPEAT_NOTE not in second["observation"]["message"]
    assert [s["resampled"] for s in run["steps"]] == [False, False, True]
    assert [s["left_out"] for s in run["steps"]] == [False, True, False]
    history = session(server, run["session_id"])["messages"]
    # The model reads its first attempt and error, then the sampled turn: not the repeat.
    contents = [m["content"] for m in history[2:]]
    assert contents == ["<execute>print(F)</execute>", first["observation"]["message"], "<solution>no idea</solution>"]
    assert second["observation"]["message"] not in [m["content"] for m in history]
    assert third["forced"] is None and run["forced_answer"] is None


def test_a_repeated_error_is_a_note_when_asked(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(F)</execute>", "<execute>print(F)</execute>", "<solution>no idea</solution>")
    run = agent(server, on_failed_repeat="note")["agent"]
    first, second, third = run["steps"]
    assert "NameError" in second["observation"]["error"]  # cell names differ, the error is the same
    assert second["observation"]["repeated"] is True
    assert REPEAT_NOTE in second["observation"]["message"]
    assert third["forced"] is None and run["forced_answer"] is None


def test_same_code_with_new_output_is_not_a_repeat(server: LiveServer, engine: ScriptedEngine) -> None:
    counter = "n = globals().get('n', 0) + 1\nprint(n)"
    engine.enqueue(f"<execute>{counter}</execute>", f"<execute>{counter}</execute>", "<solution>2</solution>")
    run = agent(server)["agent"]
    assert [s["action"]["type"] for s in run["steps"]] == ["execute", "execute", "solution"]
    assert [s["observation"]["stdout"] for s in run["steps"][:2]] == ["1\n", "2\n"]
    assert run["forced_answer"] is None and run["steps"][2]["forced"] is None


def test_note_policy_tells_the_model_and_goes_on(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(6 * 7)</execute>", "<execute>print(6 * 7)</execute>", "<solution>42</solution>")
    run = agent(server, on_repeat="note")["agent"]
    first, second, third = run["steps"]
    assert second["observation"]["repeated"] is True
    assert REPEAT_NOTE in second["observation"]["message"]
    assert REPEAT_NOTE not in first["observation"]["message"]
    assert third["forced"] is None and run["forced_answer"] is None


def test_off_policy_runs_repeats_as_usual(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(6 * 7)</execute>", "<execute>print(6 * 7)</execute>", "<solution>42</solution>")
    run = agent(server, on_repeat="off")["agent"]
    assert [s["action"]["type"] for s in run["steps"]] == ["execute", "execute", "solution"]
    assert run["steps"][1]["observation"]["repeated"] is True  # still reported, not acted on
    assert REPEAT_NOTE not in run["steps"][1]["observation"]["message"]


# -- code that computes nothing -------------------------------------------------------------
def test_code_that_only_prints_its_own_text_is_told_so(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue(
        '<execute>print("Counting the zeros...")</execute>',
        "<execute>import math\nprint(math.factorial(10))</execute>",
        "<solution>3628800</solution>",
    )
    run = agent(server, literal_code="note")["agent"]
    first, second, _ = run["steps"]
    message = first["observation"]["message"]
    assert message.startswith("Observation:\nCounting the zeros...\n" + LITERAL_NOTE + "\nYou have ")
    assert LITERAL_NOTE not in second["observation"]["message"]
    assert LITERAL_NOTE in engine.requests[-1].prompt  # the model read it
    assert run["steps"][2]["action"]["answer"] == "3628800"


def test_the_literal_note_is_off_when_asked(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue('<execute>print("Counting the zeros...")</execute>', "<solution>24</solution>")
    run = agent(server, literal_code="off")["agent"]
    assert LITERAL_NOTE not in run["steps"][0]["observation"]["message"]
    assert "Counting the zeros..." in run["steps"][0]["observation"]["message"]


def test_literal_code_can_be_left_out_and_the_next_turn_sampled(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue(
        '<execute>print("Counting the zeros...")</execute>',
        "<execute>print(len(str(2**10)))</execute>",
        "<solution>4</solution>",
    )
    run = agent(server)["agent"]  # the default
    first, second, _ = run["steps"]
    assert first["left_out"] is True and LITERAL_NOTE not in first["observation"]["message"]
    assert second["resampled"] is True
    assert "Counting the zeros" not in engine.requests[-1].prompt  # the model never read it


# -- code fed its own output (fed_back_output) --------------------------------------------
CELSIUS = "<execute>print((98.6 - 32) * 5 / 9)</execute>"
CELSIUS_AGAIN = "<execute>print((37.0 - 32) * 5 / 9)</execute>"


def test_code_fed_its_own_output_is_not_run_and_the_output_is_the_answer(
    server: LiveServer, engine: ScriptedEngine
) -> None:
    engine.enqueue(CELSIUS, CELSIUS_AGAIN, "2.78</solution>")  # its prior, under an output of 37.0
    reply = agent(server, content="Convert 98.6 F to Celsius.")  # the default
    run = reply["agent"]
    assert run["finish_reason"] == "solution" and run["forced_answer"] == "fed_back"
    assert reply["choices"][0]["message"]["content"] == "37.0"
    assert run["turns"] == 2, "the fed-back code must not cost a turn of its own"
    first, answer = run["steps"]
    assert first["observation"]["stdout"] == "37.0\n"
    assert answer["forced"] == "fed_back" and answer["observation"] is None  # never ran
    assert answer["repeated_code"] == "print((37.0 - 32) * 5 / 9)"
    assert answer["action"] == {"type": "solution", "answer": "37.0"} and answer["overruled_answer"] == "2.78"
    assert engine.requests[-1].prompt.endswith("Observation:\n37.0\n" + engine.requests[-1].prompt.split("37.0\n")[-1])
    assert engine.requests[-1].prompt.endswith("<|im_start|>assistant\n<solution>")


def test_code_fed_its_own_output_runs_when_asked(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue(CELSIUS, CELSIUS_AGAIN, "<solution>2.78</solution>")
    run = agent(server, content="Convert 98.6 F to Celsius.", fed_back_output="off")["agent"]
    assert run["forced_answer"] is None and run["turns"] == 3
    assert run["steps"][1]["observation"]["stdout"] == "2.7777777777777777\n"


# -- an answer before any code ran (unrun_answer) ------------------------------------------
def test_an_answer_before_any_code_ran_is_left_out_once(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<solution>41</solution>", "<solution>40</solution>")
    reply = agent(server, unrun_answer="resample")
    run = reply["agent"]
    first, second = run["steps"]
    assert first["left_out"] is True and first["action"] == {"type": "solution", "answer": "41"}
    assert second["resampled"] is True and engine.requests[-1].temperature >= 0.7
    assert "41" not in engine.requests[-1].prompt  # the model never read its guess
    assert reply["choices"][0]["message"]["content"] == "40"  # a second one is taken
    history = session(server, run["session_id"])["messages"]
    assert [m["content"] for m in history if m["role"] == "assistant"] == ["<solution>40</solution>"]


def test_an_answer_after_code_ran_or_in_a_follow_up_is_taken(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(6 * 7)</execute>", "<solution>42</solution>")
    run = agent(server, unrun_answer="resample")["agent"]
    assert run["turns"] == 2 and not any(step["left_out"] for step in run["steps"])
    engine.enqueue("<solution>It was 6 * 7.</solution>")  # the session's code backs a follow-up
    follow_up = agent(server, "How did you get it?", session_id=run["session_id"], unrun_answer="resample")
    assert follow_up["agent"]["turns"] == 1 and follow_up["choices"][0]["message"]["content"] == "It was 6 * 7."


def test_code_that_computes_nothing_does_not_back_an_answer(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue('<execute>print("Computing...")</execute>', "<solution>41</solution>", "<solution>42</solution>")
    run = agent(server, unrun_answer="resample", literal_code="off")["agent"]
    assert [step["left_out"] for step in run["steps"]] == [False, True, False]


def test_an_answer_before_any_code_ran_is_taken_when_asked(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<solution>42</solution>")
    run = agent(server, unrun_answer="off")["agent"]
    assert run["turns"] == 1 and run["steps"][0]["left_out"] is False


# -- the last turn -------------------------------------------------------------------------
def test_the_last_turn_can_only_be_a_solution(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(6 * 7)</execute>", "42</solution>")
    reply = agent(server, max_turns=2)
    run = reply["agent"]
    assert run["finish_reason"] == "solution" and run["forced_answer"] == "last_turn"
    assert run["turns"] == 2
    first, last = run["steps"]
    assert "last step" in first["observation"]["message"]  # told one turn ahead
    assert last["action"] == {"type": "solution", "answer": "42"} and last["forced"] == "last_turn"
    # No thinking phase: <solution> is opened at once, under the answer grammar.
    last_turn = engine.requests[-1]
    assert last_turn.prompt.endswith("<|im_start|>assistant\n<solution>")
    assert last_turn.grammar == body_grammar(SOLUTION_CLOSE)
    assert len(engine.requests) == 3  # thought + body, then the answer alone


def test_code_written_as_the_forced_answer_is_run_for_its_output(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>x = 6 * 7</execute>", "print(x)</solution>")
    run = agent(server, max_turns=2)["agent"]
    last = run["steps"][1]
    assert last["action"] == {"type": "solution", "answer": "42", "code": "print(x)"}
    assert last["observation"]["stdout"] == "42\n"
    assert run["forced_answer"] == "last_turn"


def test_code_in_a_solution_runs_as_the_execute_it_meant(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("Here is the code.\n<solution>print(6 * 7)</solution>", "<solution>42</solution>")
    run = agent(server)["agent"]
    first, second = run["steps"]
    assert first["action"] == {"type": "execute", "code": "print(6 * 7)"}
    assert first["observation"]["stdout"] == "42\n"
    assert second["action"]["answer"] == "42" and second["forced"] is None
    history = session(server, run["session_id"])["messages"]
    assert {"role": "assistant", "content": "Here is the code.\n<execute>print(6 * 7)</execute>"} in history


def test_a_value_in_a_solution_is_an_answer(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<solution>2**100 % 997</solution>")
    run = agent(server)["agent"]
    assert run["steps"][0]["action"] == {"type": "solution", "answer": "2**100 % 997"}


def test_code_answer_off_takes_code_as_the_answer(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<solution>print(6 * 7)</solution>")
    run = agent(server, code_answer="off")["agent"]
    assert run["steps"][0]["action"] == {"type": "solution", "answer": "print(6 * 7)"}


def test_a_markdown_fence_in_the_thinking_is_run(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue(
        "I will compute it:\n```python\nprint(6 * 7)\n```\nThat prints it.",
        # The fake replays a turn only while the prompt continues it; with <execute> written in
        # place of the fence, the block's body is its next turn.
        "print(6 * 7)\n```\nThat prints it.",
        "<solution>42</solution>",
    )
    run = agent(server)["agent"]
    first = run["steps"][0]
    assert first["action"] == {"type": "execute", "code": "print(6 * 7)"}
    assert first["observation"]["stdout"] == "42\n"
    history = session(server, run["session_id"])["messages"]
    assert history[2] == {"role": "assistant", "content": "I will compute it:\n<execute>print(6 * 7)\n</execute>"}


def test_fenced_code_off_leaves_the_fence_as_thinking(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("I will compute it:\n```python\nprint(6 * 7)\n```\nThat prints it.")
    run = agent(server, fenced_code="off")["agent"]
    assert run["finish_reason"] == "no_action"


def test_a_one_turn_budget_may_still_run_code(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(1)</execute>")
    run = agent(server, max_turns=1)["agent"]
    assert run["finish_reason"] == "max_turns" and run["forced_answer"] is None
    assert run["steps"][0]["observation"]["stdout"] == "1\n"


def test_chat_style_keeps_the_reference_demo_framing(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(5)</execute>", "<solution>5</solution>")
    run = agent(server, prompt_style="chat", max_turns=3)["agent"]
    message = run["steps"][0]["observation"]["message"]
    assert message.startswith("Execution Output:\n5\n") and "2 turns left" in message
    assert engine.requests[0].prompt.endswith("<|im_start|>user\nWhat is 6 * 7?<|im_end|>\n<|im_start|>assistant\n")


def test_no_prompt_carries_an_example_answer(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<solution>x</solution>")
    agent(server)
    system = engine.requests[0].prompt.split("<|im_end|>")[0]
    assert "<solution>" in system and "42" not in system
    import re

    blocks = re.findall(r"<solution>([^<]*)</solution>", system)
    assert all(body.strip() == "and" for body in blocks), f"an answer the model could copy: {blocks}"


def test_policy_fields_are_validated(server: LiveServer) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "on_repeat": "sometimes"}
    response = httpx.post(server.url + "/v1/agent", json=body, timeout=30)
    assert response.status_code in (400, 422)
    assert "on_repeat" in response.text


# -- the flag reaches every view -----------------------------------------------------------
def test_forced_answer_in_the_stream_and_the_transcript(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print(6 * 7)</execute>", "<execute>print(6 * 7)</execute>", "42</solution>")
    with openai.OpenAI(base_url=server.url + "/v1/agent", api_key="x", max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "6*7?"}], stream=True)
        )
    events = [c.model_extra["agent"] for c in chunks]
    done = events[-1]
    assert done["type"] == "done" and done["forced_answer"] == "repeat" and done["final_message"] == "42"
    steps = [e["step"] for e in events if e["type"] == "step"]
    assert [s["forced"] for s in steps] == [None, "repeat"]
    answer = "".join(e["text"] for e in events if e["type"] == "delta" and e["channel"] == "answer")
    assert answer == "42"
    transcript = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "answer forced: the model repeated code" in transcript


def test_terminal_view_shows_a_forced_answer() -> None:
    out = io.StringIO()
    view = TerminalView(out)  # not a terminal: no colour codes
    view.event(
        {"type": "done", "finish_reason": "solution", "turns": 2, "session_id": "sess_x", "forced_answer": "last_turn"}
    )
    assert "answer forced: the turn limit was reached" in out.getvalue()


@pytest.mark.parametrize(
    ("emitted", "tag", "text"),
    [
        ("\n<solution", "<solution>", "\n<solution>"),  # llama-server at the choose phase's token limit
        ("<e", "<execute>", "<execute>"),
        ("<execute>", "<execute>", "<execute>"),
        ("<", None, "<"),  # either tag: nothing to complete
        ("hello", None, "hello"),
        ("", None, ""),
    ],
)
def test_a_tag_cut_by_the_token_limit_is_completed(emitted: str, tag: str | None, text: str) -> None:
    from server.agent.turns import complete_tag

    assert complete_tag(emitted) == (tag, text)


@pytest.mark.parametrize(
    ("block", "code"),
    [
        ("<execute>python\nprint(6 * 7)\n</execute>", "print(6 * 7)"),  # the fence taken for <execute>
        ("<execute>\n```python\nprint(6 * 7)\n```\n</execute>", "print(6 * 7)"),
        ("<execute>python = 3\nprint(python)</execute>", "python = 3\nprint(python)"),  # real code stays
    ],
)
def test_markdown_left_in_an_execute_block_is_not_code(block: str, code: str) -> None:
    from server.agent.actions import parse_turn

    assert parse_turn(block).code == code


def test_options_that_measured_nothing_are_gone(server: LiveServer, engine: ScriptedEngine) -> None:
    """restate_task and unverified_answer left the API (issue 26; RESULTS.md keeps their figures)."""
    for name in ("restate_task", "unverified_answer"):
        assert f"agent_{name}" not in Settings.model_fields and not hasattr(LoopPolicy(), name)
        assert name not in httpx.get(server.url + "/openapi.json").text
        body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], name: "off"}
        refused = httpx.post(server.url + "/v1/agent", json=body)  # sent anyway: a 400, not a silent drop
        assert refused.status_code == 400 and refused.json()["error"]["param"] == name
    # with unrun_answer off (this fixture's ANSWER_AT_ONCE), nothing questions or replaces a first answer
    engine.enqueue("<solution>Paris</solution>")
    assert agent(server, "What is the capital of France?")["agent"]["turns"] == 1


@pytest.mark.parametrize(
    ("field", "value"), [("literal_code", "loud"), ("fed_back_output", "twice"), ("unrun_answer", "twice")]
)
def test_a_bad_loop_option_value_is_refused_naming_the_field(server: LiveServer, field: str, value: str) -> None:
    response = httpx.post(
        f"{server.url}/v1/agent",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], field: value},
    )
    assert response.status_code in (400, 422)
    assert field in response.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("response_format", {"type": "json_object"}),
        ("tool_choice", "required"),
        ("logprobs", True),
        ("stop", ["\n"]),
    ],
)
def test_chat_fields_the_agent_cannot_honour_are_refused(server: LiveServer, field: str, value: object) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], field: value}
    response = httpx.post(server.url + "/v1/agent", json=body, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == field
