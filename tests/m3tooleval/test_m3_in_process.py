"""The oracle through the REAL server: uvicorn, agent loop, sandbox workers, JSON over HTTP.

The scripted oracle only knows the task by its instruction in the rendered prompt and the
answer only by reading the execution output the server fed back, so a pass here means the
tool sources reached the sandbox, ran there, and their output came back as an observation,
for every domain. The fake-endpoint tests in ``test_m3_harness`` cannot show that.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from benchmarks.m3tooleval.__main__ import main
from benchmarks.m3tooleval.harness import TaskRun, run_against_server, select_tasks
from benchmarks.m3tooleval.in_process import build_engine, run_in_process, served, server_settings
from benchmarks.m3tooleval.oracle_model import ANSWER_MARKER
from benchmarks.m3tooleval.tools import DOMAINS


def _assert_solved_in_the_sandbox(runs: list[TaskRun]) -> None:
    failures = [(r.name, r.error, r.answer) for r in runs if not (r.reference and r.lenient)]
    assert failures == []
    for run in runs:
        assert run.response is not None
        first, last = run.response["agent"]["steps"]
        assert first["action"]["type"] == "execute"
        assert first["observation"]["stdout"].startswith(ANSWER_MARKER), run.name
        assert first["observation"]["error"] is None, run.name
        assert last["action"] == {"type": "solution", "answer": run.answer}
        assert (run.turns, run.malformed_turns, run.finish_reason) == (2, 0, "solution")


def test_one_task_per_domain_and_sessions_are_released() -> None:
    tasks = [select_tasks(domain, limit=1)[0] for domain in DOMAINS]
    settings = server_settings()
    engine = build_engine(settings, oracle=True, tasks=tasks)
    with served(settings, engine) as url:
        runs = run_against_server(url, tasks, model="oracle", timeout_s=120)
        health = httpx.get(url + "/health", timeout=10).json()
    assert {run.domain for run in runs} == set(DOMAINS)
    _assert_solved_in_the_sandbox(runs)
    # Each task's session (and its sandbox worker) was deleted after the task.
    assert health["sessions"] == 0


@pytest.mark.slow
def test_all_82_tasks_through_the_real_server() -> None:
    runs = run_in_process(select_tasks(), oracle=True, timeout_s=120)
    assert len(runs) == 82
    _assert_solved_in_the_sandbox(runs)


def test_cli_in_process_oracle_prints_success_last(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--oracle", "--tasks", "trade_calculator", "--limit", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == "success 2/2"
