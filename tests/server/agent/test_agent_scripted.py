"""The agent loop over real HTTP with a scripted model and the real sandbox (deterministic)."""

from __future__ import annotations

import httpx
import openai

from models.engine.scripted import ScriptedEngine
from tests.live_server import LiveServer
from tests.scripted_agent import MODEL, agent


def test_solution_on_the_first_turn(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("I know this one.\n<solution>42</solution>")
    reply = agent(server)
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["content"] == "42"
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["agent"]["finish_reason"] == "solution"
    assert reply["agent"]["turns"] == 1
    step = reply["agent"]["steps"][0]
    assert step["thought"] == "I know this one."
    assert step["action"] == {"type": "solution", "answer": "42"}
    assert reply["usage"]["completion_tokens"] == step["tokens"]["completion"] > 0
    prompt = engine.requests[0].prompt
    assert prompt.startswith("<|im_start|>system\n") and "<execute>" in prompt
    assert prompt.endswith("<|im_start|>user\nTask:\nWhat is 6 * 7?<|im_end|>\n<|im_start|>assistant\n")
    # Phase 1 (thinking) stops at an opening tag; phase 2 continues inside the block.
    thinking, body = engine.requests
    assert set(thinking.stop) == {"<|im_end|>", "<execute>", "<solution>", "```python\n", "```py\n", "```Python\n"}
    assert body.prompt == thinking.prompt + "I know this one.\n<solution>"
    assert set(body.stop) == {"<|im_end|>", "</solution>", "</execute>", "<execute>", "<solution>"}
    assert step["phases"] == ["thought", "body"]


def turn_prompts(engine: ScriptedEngine) -> list[str]:
    """Prompts at which an assistant turn began (the thinking phase of each turn)."""
    closers = {"</execute>", "</solution>"}
    return [
        r.prompt for r in engine.requests if "<execute>" in r.stop and not closers & set(r.stop) and r.grammar is None
    ]


def test_block_left_open_at_end_of_turn_is_closed(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>print('closed for you')", "<solution>ok</solution>")
    reply = agent(server, literal_code="off")  # code that computes nothing is kept in the history
    assert reply["agent"]["steps"][0]["observation"]["stdout"] == "closed for you\n"
    assert "print('closed for you')</execute><|im_end|>" in turn_prompts(engine)[1]


def test_a_second_action_inside_a_block_is_cut_off(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<solution>42\n<execute>print('sneaky')</execute></solution>")
    reply = agent(server)
    assert reply["choices"][0]["message"]["content"] == "42"
    assert reply["agent"]["steps"][0]["action"] == {"type": "solution", "answer": "42"}


def test_the_other_blocks_closing_tag_closes_a_block(server: LiveServer, engine: ScriptedEngine) -> None:
    # SmolLM2 on llama-server, a forced answer: "<solution>" + code + "</execute>" + prose.
    engine.enqueue("<solution>42\n</execute>\nYou already ran this code.</solution>")
    reply = agent(server)
    assert reply["agent"]["steps"][0]["action"] == {"type": "solution", "answer": "42"}
    session = httpx.get(f"{server.url}/v1/agent/sessions/{reply['agent']['session_id']}").json()
    assert session["messages"][-1]["content"] == "<solution>42\n</solution>"


def test_whole_turn_grammar_mode(server: LiveServer, engine: ScriptedEngine) -> None:
    from server.agent.actions import ACTION_GRAMMAR

    engine.enqueue("<execute>print(2)</execute>", "<solution>2</solution>")
    reply = agent(server, grammar="gbnf")
    assert reply["agent"]["steps"][0]["observation"]["stdout"] == "2\n"
    assert [r.grammar for r in engine.requests] == [ACTION_GRAMMAR, ACTION_GRAMMAR]
    assert "</execute>" in engine.requests[0].stop


def test_code_then_solution(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("Let me compute.\n<execute>\nprint(6 * 7)\n</execute>", "<solution>42</solution>")
    reply = agent(server)
    first, second = reply["agent"]["steps"]
    assert first["action"] == {"type": "execute", "code": "print(6 * 7)"}
    assert first["observation"]["stdout"] == "42\n"
    assert first["observation"]["error"] is None
    assert second["action"]["answer"] == "42"
    assert reply["agent"]["turns"] == 2
    assert reply["usage"]["prompt_tokens"] == first["tokens"]["prompt"] + second["tokens"]["prompt"]
    # The stop string was put back and each turn only appended to the prompt.
    turn1, turn2 = turn_prompts(engine)
    assert turn2.startswith(turn1)
    assert "print(6 * 7)\n</execute><|im_end|>\n<|im_start|>user\nObservation:\n42\n" in turn2


def test_turn_without_action_ends_the_loop(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("Hello! How can I help?")
    reply = agent(server, "hi")
    assert reply["agent"]["finish_reason"] == "no_action"
    assert reply["choices"][0]["message"]["content"] == "Hello! How can I help?"
    assert reply["agent"]["steps"][0]["action"] == {"type": "none"}


def test_max_turns_stops_the_loop_without_the_final_answer_policy(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>a = 1</execute>", "<execute>a += 1</execute>", "<solution>x</solution>")
    reply = agent(server, max_turns=2, final_answer=False, prompt_style="chat")
    assert reply["agent"]["finish_reason"] == "max_turns"
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["agent"]["turns"] == 2
    assert "You have 1 turn left." in turn_prompts(engine)[1]
    assert "You have no turns left" in reply["agent"]["steps"][1]["observation"]["message"]


def test_empty_output_gets_a_marker(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>x = 5</execute>", "<solution>5</solution>")
    agent(server)
    assert "Observation:\n[Code executed successfully with no output]" in turn_prompts(engine)[1]


def test_code_error_becomes_a_traceback_observation(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>1 / 0</execute>", "<execute>print('recovered')</execute>", "<solution>ok</solution>")
    reply = agent(server)
    steps = reply["agent"]["steps"]
    assert "ZeroDivisionError" in steps[0]["observation"]["error"]
    assert "ZeroDivisionError: division by zero" in turn_prompts(engine)[1]
    assert steps[1]["observation"]["stdout"] == "recovered\n"
    assert reply["agent"]["finish_reason"] == "solution"


def test_timeout_is_reported_in_plain_words(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue(
        "<execute>while True:\n    pass</execute>", "<execute>print('alive')</execute>", "<solution>done</solution>"
    )
    reply = agent(server, execution_timeout=1)
    first, second = reply["agent"]["steps"][:2]
    assert first["observation"]["timed_out"] is True
    assert "time limit" in first["observation"]["message"]
    assert "time limit" in turn_prompts(engine)[1]
    assert second["observation"]["stdout"] == "alive\n"


def test_state_persists_across_turns_and_requests(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>x = 41</execute>", "<execute>y = x + 1</execute>", "<solution>set</solution>")
    first = agent(server, "set x")
    session_id = first["agent"]["session_id"]
    engine.enqueue("<execute>print(x, y)</execute>", "<solution>42</solution>")
    second = agent(server, "print them", session_id=session_id)
    assert second["agent"]["session_id"] == session_id
    assert second["agent"]["steps"][0]["observation"]["stdout"] == "41 42\n"
    assert second["agent"]["steps"][0]["index"] == 3
    # The second request continued the same conversation rather than starting over.
    prompts = turn_prompts(engine)
    assert prompts[3].startswith(prompts[2])
    session = httpx.get(f"{server.url}/v1/agent/sessions/{session_id}").json()
    assert session["turns"] == 5
    assert [m["role"] for m in session["messages"]].count("system") == 1


def test_tools_are_defined_and_described(server: LiveServer, engine: ScriptedEngine) -> None:
    tool = {
        "name": "add",
        "signature": "add(a: int, b: int) -> int",
        "description": "Add two integers.",
        "source": "def add(a, b):\n    return a + b\n",
    }
    engine.enqueue("<execute>print(add(2, 3))</execute>", "<solution>5</solution>")
    reply = agent(server, "add 2 and 3", tools=[tool])
    assert reply["agent"]["steps"][0]["observation"]["stdout"] == "5\n"
    prompt = turn_prompts(engine)[0]
    assert "Tool function available (already imported in <execute> environment):\n" in prompt
    assert "[1] add(a: int, b: int) -> int\nAdd two integers." in prompt


def test_broken_tool_source_is_a_400(server: LiveServer) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "bad", "source": "def bad(:\n"}],
    }
    response = httpx.post(server.url + "/v1/agent", json=body, timeout=30)
    assert response.status_code == 400
    assert "tool 'bad'" in response.json()["error"]["message"]


def test_plot_is_listed_and_downloadable(server: LiveServer, engine: ScriptedEngine) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.savefig('squares.png')\nprint('saved')"
    engine.enqueue(f"<execute>\n{code}\n</execute>", "<solution>see squares.png</solution>")
    reply = agent(server, "plot squares")
    observation = reply["agent"]["steps"][0]["observation"]
    assert "squares.png" in observation["files"]
    assert "squares.png" in turn_prompts(engine)[1]
    session_id = reply["agent"]["session_id"]
    files = httpx.get(f"{server.url}/v1/agent/sessions/{session_id}").json()["files"]
    assert {"path": "squares.png"}.items() <= next(f for f in files if f["path"] == "squares.png").items()
    png = httpx.get(f"{server.url}/v1/agent/sessions/{session_id}/files/squares.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    escape = httpx.get(f"{server.url}/v1/agent/sessions/{session_id}/files/..%2F..%2Fetc%2Fpasswd")
    assert escape.status_code in (400, 404) and b"root:" not in escape.content
    missing = httpx.get(f"{server.url}/v1/agent/sessions/{session_id}/files/nope.png")
    assert missing.status_code == 404


def test_download_never_follows_a_link_the_code_planted(server: LiveServer, engine: ScriptedEngine) -> None:
    code = "import os\nos.symlink('/etc/passwd', 'secret.txt')\nopen('plain.txt', 'w').write('mine')\nprint('ok')"
    engine.enqueue(f"<execute>\n{code}\n</execute>", "<solution>done</solution>")
    session_id = agent(server, "plant a link")["agent"]["session_id"]
    base = f"{server.url}/v1/agent/sessions/{session_id}/files/"
    link = httpx.get(base + "secret.txt")
    assert link.status_code == 400 and b"root:" not in link.content
    assert link.json()["error"]["param"] == "file_path"
    plain = httpx.get(base + "plain.txt")
    assert plain.status_code == 200 and plain.content == b"mine"
    assert plain.headers["content-length"] == "4" and "plain.txt" in plain.headers["content-disposition"]


def test_idle_sessions_make_room_and_closed_ones_say_why(server: LiveServer, engine: ScriptedEngine) -> None:
    """scripted_server keeps 3 sessions: a 4th one-shot run closes the least recently used idle one."""
    ids = []
    for _ in range(3):
        engine.enqueue("<solution>ok</solution>")
        ids.append(agent(server)["agent"]["session_id"])
    assert httpx.get(f"{server.url}/v1/agent/sessions/{ids[0]}").status_code == 200  # now ids[1] is the oldest
    engine.enqueue("<solution>ok</solution>")
    assert agent(server, "one more")["agent"]["finish_reason"] == "solution"
    evicted = httpx.get(f"{server.url}/v1/agent/sessions/{ids[1]}")
    assert evicted.status_code == 404
    assert "closed to make room" in evicted.json()["error"]["message"]
    deleted = httpx.delete(f"{server.url}/v1/agent/sessions/{ids[0]}")
    assert deleted.json()["deleted"] is True
    gone = httpx.get(f"{server.url}/v1/agent/sessions/{ids[0]}")
    assert gone.status_code == 404 and "was deleted" in gone.json()["error"]["message"]
    metrics = httpx.get(server.url + "/metrics").text
    assert "codeact_sessions_evicted_total 1.0" in metrics


def test_unknown_session_is_404(server: LiveServer) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "session_id": "sess_nope"}
    assert httpx.post(server.url + "/v1/agent", json=body).status_code == 404


def test_stream_through_the_openai_sdk(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("Compute it.\n<execute>\nprint(6 * 7)\n</execute>", "Done.\n<solution>42</solution>")
    with openai.OpenAI(base_url=server.url + "/v1/agent", api_key="x", max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "6*7?"}], stream=True)
        )
    events = [c.model_extra["agent"] for c in chunks]
    assert events[0]["type"] == "session"
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "solution"
    assert chunks[-1].choices[0].finish_reason == "stop"
    code = "".join(e["text"] for e in events if e["type"] == "delta" and e["channel"] == "code")
    assert code.strip() == "print(6 * 7)"
    steps = [e["step"] for e in events if e["type"] == "step"]
    assert [s["action"]["type"] for s in steps] == ["execute", "solution"]
    assert steps[0]["observation"]["stdout"] == "42\n"
    transcript = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "```python\n\nprint(6 * 7)\n\n```" in transcript
    assert "Observation:\n42" in transcript
    assert transcript.rstrip().endswith("42")
