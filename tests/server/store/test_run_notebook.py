"""A stored agent run read back: its record as JSON and as a Jupyter notebook.

A scripted run (the scripted model, a real sandbox) runs code that prints, fails, and then
answers; its notebook must validate with ``nbformat`` and convert to HTML with ``nbconvert``
(Jupyter's own tools), holding the code, its output and the error as cell outputs. A real
SmolLM2 run's notebook validates too. Another API key gets a 404 for both.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import nbformat
import pytest
from nbconvert import HTMLExporter

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

KEYS = {"Authorization": "Bearer key-a"}
OTHER = {"Authorization": "Bearer key-b"}
TURNS = [
    "I will compute it.\n<execute>\ntotal = sum(range(10))\nprint('total', total)\n</execute>",
    "Now check a failure.\n<execute>\n1 / 0\n</execute>",
    "<solution>45</solution>",
]


@pytest.fixture
def scripted() -> Iterator[LiveServer]:
    settings = Settings(sandbox_pool_size=1, execution_timeout=20, api_key=["key-a", "key-b"])
    with LiveServer(create_app(settings, ScriptedEngine(list(TURNS)))) as live:
        yield live


def post_agent(live: LiveServer, model: str, **extra: object) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": "Sum 0..9."}], "max_turns": 4, **extra}
    reply = httpx.post(live.url + "/v1/agent", json=body, headers=KEYS, timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_a_scripted_runs_record_and_notebook(scripted: LiveServer) -> None:
    answer = post_agent(scripted, "scripted")
    run_id = answer["id"]
    record = httpx.get(f"{scripted.url}/v1/agent/runs/{run_id}", headers=KEYS).json()
    assert record["id"] == run_id and record["session_id"] == answer["agent"]["session_id"]
    assert [s["action"]["type"] for s in record["steps"]] == ["execute", "execute", "solution"]
    assert record["outcome"]["finish_reason"] == answer["agent"]["finish_reason"] == "solution"

    reply = httpx.get(f"{scripted.url}/v1/agent/runs/{run_id}", params={"format": "ipynb"}, headers=KEYS)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/x-ipynb+json")
    assert f"{run_id}.ipynb" in reply.headers["content-disposition"]
    notebook = nbformat.reads(reply.text, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.source for c in code] == ["total = sum(range(10))\nprint('total', total)", "1 / 0"]
    assert code[0].outputs[0].text == "total 45\n" and code[0].execution_count == 1
    assert code[1].outputs[-1].output_type == "error" and code[1].outputs[-1].ename == "ZeroDivisionError"
    assert "**Answer:** 45" in notebook.cells[-2].source
    html, _ = HTMLExporter().from_notebook_node(notebook)
    assert "total 45" in html and "ZeroDivisionError" in html

    for form in ("json", "ipynb"):
        hidden = httpx.get(f"{scripted.url}/v1/agent/runs/{run_id}", params={"format": form}, headers=OTHER)
        assert hidden.status_code == 404, hidden.text


def test_an_unknown_run_and_a_bad_format_are_named(scripted: LiveServer) -> None:
    missing = httpx.get(f"{scripted.url}/v1/agent/runs/run_nope", headers=KEYS)
    assert missing.status_code == 404 and "run_nope" in missing.json()["error"]["message"]
    answer = post_agent(scripted, "scripted")
    bad = httpx.get(f"{scripted.url}/v1/agent/runs/{answer['id']}", params={"format": "pdf"}, headers=KEYS)
    assert bad.status_code in (400, 422) and "format" in bad.text


def test_a_real_smollm2_runs_notebook_validates(real_engine) -> None:
    settings = Settings(sandbox_pool_size=1, api_key=["key-a", "key-b"])
    with LiveServer(create_app(settings, real_engine, close_engine=False)) as live:
        answer = post_agent(live, "smollm2-135m", max_tokens=48, temperature=0, max_turns=2)
        reply = httpx.get(f"{live.url}/v1/agent/runs/{answer['id']}", params={"format": "ipynb"}, headers=KEYS)
        assert reply.status_code == 200, reply.text
        notebook = nbformat.reads(reply.text, as_version=4)
        nbformat.validate(notebook)
        assert notebook.metadata["codeact"]["id"] == answer["id"]
        assert "Sum 0..9." in notebook.cells[0].source
        HTMLExporter().from_notebook_node(notebook)


def test_a_replay_of_a_deterministic_run_matches(scripted: LiveServer) -> None:
    answer = post_agent(scripted, "scripted")
    reply = httpx.post(f"{scripted.url}/v1/agent/runs/{answer['id']}/replay", headers=KEYS, timeout=120)
    assert reply.status_code == 200, reply.text
    replayed = reply.json()
    assert [s["match"] for s in replayed["steps"]] == ["exact", "exact"]
    assert replayed["matches"] is True and replayed["diverged_at"] is None
    assert (
        replayed["steps"][1]["replayed"]["error"] and "ZeroDivisionError" in replayed["steps"][1]["replayed"]["error"]
    )
    other = httpx.post(f"{scripted.url}/v1/agent/runs/{answer['id']}/replay", headers=OTHER, timeout=60)
    assert other.status_code == 404


def test_a_replay_names_the_step_that_read_the_clock_or_chance() -> None:
    turns = [
        "<execute>\nx = 6 * 7\nprint(x)\n</execute>",
        "<execute>\nimport time, random\nprint(time.time_ns(), random.random())\n</execute>",
        "<execute>\nprint(object())\n</execute>",
        "<solution>42</solution>",
    ]
    settings = Settings(sandbox_pool_size=1, execution_timeout=20, api_key=["key-a"])
    with LiveServer(create_app(settings, ScriptedEngine(turns))) as live:
        answer = post_agent(live, "scripted", max_turns=5)
        replayed = httpx.post(f"{live.url}/v1/agent/runs/{answer['id']}/replay", headers=KEYS, timeout=120).json()
    assert [s["match"] for s in replayed["steps"]] == ["exact", "differs", "normalized"]
    assert replayed["matches"] is False and replayed["diverged_at"] == replayed["steps"][1]["index"]
    assert replayed["steps"][1]["recorded"]["stdout"] != replayed["steps"][1]["replayed"]["stdout"]


def test_a_fork_replays_up_to_its_step_and_goes_on_with_new_options() -> None:
    turns = [
        "<execute>\nx = 6 * 7\nprint(x)\n</execute>",
        "<execute>\ny = x + 1\nprint(y)\n</execute>",
        "<solution>43</solution>",
        # the fork's own turns: they read the state steps 0-1 left
        "<execute>\nprint(x * y)\n</execute>",
        "<solution>1806</solution>",
    ]
    settings = Settings(sandbox_pool_size=1, execution_timeout=20, api_key=["key-a", "key-b"])
    engine = ScriptedEngine(turns)
    with LiveServer(create_app(settings, engine)) as live:
        original = post_agent(live, "scripted", max_turns=5)
        assert original["choices"][0]["message"]["content"] == "43"
        served = len(engine.requests)
        url = f"{live.url}/v1/agent/runs/{original['id']}/fork"
        refused = httpx.post(url, json={"model": "scripted", "at_step": 2}, headers=KEYS, timeout=60)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "at_step"
        hidden = httpx.post(url, json={"model": "scripted", "at_step": 1}, headers=OTHER, timeout=60)
        assert hidden.status_code == 404
        reply = httpx.post(url, json={"model": "scripted", "at_step": 1, "max_turns": 4}, headers=KEYS, timeout=120)
        assert reply.status_code == 200, reply.text
        fork = reply.json()
        assert fork["id"] != original["id"] and fork["agent"]["session_id"] != original["agent"]["session_id"]
        assert fork["agent"]["fork"] == {
            "from_run": original["id"],
            "at_step": 1,
            "replayed": [{"index": 0, "match": "exact"}, {"index": 1, "match": "exact"}],
        }
        # the model read the run's conversation up to step 1, its output included, and not step 2
        prompt = engine.requests[served].prompt
        assert "y = x + 1" in prompt and "43" in prompt and "<solution>43" not in prompt
        steps = fork["agent"]["steps"]
        assert [s["index"] for s in steps] == [2, 3]
        assert steps[0]["observation"]["stdout"] == "1806\n"
        assert fork["choices"][0]["message"]["content"] == "1806"
        record = httpx.get(f"{live.url}/v1/agent/runs/{fork['id']}", headers=KEYS).json()
        assert [s["index"] for s in record["steps"]] == [2, 3] and record["request"]["options"]["max_turns"] == 4


PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.savefig('squares.png')\nprint('saved')"


def test_a_run_that_draws_a_plot_shows_it_in_its_notebook() -> None:
    turns = [f"Plot it.\n<execute>\n{PLOT}\n</execute>", "<solution>plotted</solution>"]
    settings = Settings(sandbox_pool_size=1, execution_timeout=60, api_key=["key-a"])
    with LiveServer(create_app(settings, ScriptedEngine(turns))) as live:
        answer = post_agent(live, "scripted")
        reply = httpx.get(f"{live.url}/v1/agent/runs/{answer['id']}", params={"format": "ipynb"}, headers=KEYS)
    assert reply.status_code == 200, reply.text
    notebook = nbformat.reads(reply.text, as_version=4)
    nbformat.validate(notebook)
    (cell,) = [c for c in notebook.cells if c.cell_type == "code"]
    assert cell.metadata["codeact"]["usage"]["sandbox"]["executions"] == 1  # what the cell cost
    (image,) = [o for o in cell.outputs if o.output_type == "display_data"]
    png = base64.b64decode(image.data["image/png"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    html, _ = HTMLExporter().from_notebook_node(notebook)
    assert "data:image/png;base64," + image.data["image/png"][:64] in html
