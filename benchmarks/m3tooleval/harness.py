"""Running tasks against ``POST /v1/agent`` and turning responses into scored records.

One task is one request: the instruction as the only user message, the task's tools (with
their sandbox source), ``max_turns`` 10 as in the paper, temperature 0, 30 s per execution
as in the reference evaluation, no streaming; the task's session is deleted afterwards. The
answer is the final assistant message (the ``<solution>`` text); it is scored by the
reference judge and the lenient one. What the agent did turn by turn comes back in the
response's ``agent`` field and is kept whole in the per-task JSON.

Definitions used by the report:

* **turns**: ``agent.turns``, the number of model turns the episode used.
* **malformed turn**: a model turn whose action parsed as neither ``<execute>`` nor
  ``<solution>`` (a step whose ``action.type`` is ``"none"``, including a turn cut off by
  the token limit). Such a turn ends the episode (``finish_reason`` ``"no_action"`` or
  ``"length"``), so there is at most one per task, never in a task that ended in a
  solution. The malformed-turn rate is malformed turns over all model turns.
* **answer**: ``choices[0].message.content`` when ``agent.finish_reason`` is ``"solution"``;
  otherwise there is no answer (the content is then the model's last thought, which must
  not be judged as if it were a solution). It is kept as ``final_message`` either way.
"""

from __future__ import annotations

import contextlib
import fnmatch
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from .data import load_tasks
from .prompt import user_message
from .scoring import score_lenient, score_reference
from .tools import tools_for_task

MAX_TURNS = 10
#: The reference gave each execution 30 s in evaluation (60 s in its chat demo).
EXECUTION_TIMEOUT_S = 30.0


def select_tasks(spec: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Tasks in upstream order matching a comma-separated list of names, domains or globs.

    Each item may be a full name (``web_browsing/people_in_sales``), a short name
    (``people_in_sales``), a domain (``trade_calculator``) or a glob on the full name
    (``web_browsing/price_*``).
    """
    tasks = list(load_tasks())
    if spec:
        patterns = [item.strip() for item in spec.split(",") if item.strip()]

        def wanted(task: dict[str, Any]) -> bool:
            short = task["name"].split("/", 1)[1]
            return any(
                p in (task["name"], short, task["domain"]) or fnmatch.fnmatchcase(task["name"], p) for p in patterns
            )

        tasks = [task for task in tasks if wanted(task)]
        if not tasks:
            raise ValueError(f"no task matches --tasks {spec!r}")
    return tasks[:limit] if limit is not None else tasks


def agent_request(
    task: dict[str, Any], model: str, max_turns: int = MAX_TURNS, max_tokens: int | None = None
) -> dict[str, Any]:
    """The ``/v1/agent`` body for one task; ``max_tokens`` caps each turn (default: the server's)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": user_message(task)}],
        "tools": tools_for_task(task),
        "max_turns": max_turns,
        "temperature": 0,
        "execution_timeout": EXECUTION_TIMEOUT_S,
        "stream": False,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


@dataclass
class TaskRun:
    """One task's outcome; ``response`` is the server's whole JSON answer."""

    name: str
    domain: str
    answer: str | None = None
    final_message: str | None = None
    reference: bool = False
    lenient: bool = False
    turns: int = 0
    finish_reason: str | None = None
    malformed_turns: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    wall_s: float = 0.0
    error: str | None = None
    response: dict[str, Any] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Everything, for the per-task file."""
        return asdict(self)


def _action_type(step: dict[str, Any]) -> str | None:
    action = step.get("action")
    if isinstance(action, dict):
        kind = action.get("type")
        return kind if isinstance(kind, str) else None
    return action if isinstance(action, str) else None


def count_malformed(steps: Iterable[dict[str, Any]]) -> int:
    """Steps whose action is ``"none"``: model turns with neither execute nor solution."""
    return sum(1 for step in steps if _action_type(step) == "none")


def record_response(task: dict[str, Any], response: dict[str, Any], wall_s: float) -> TaskRun:
    """Score a ``chat.completion`` + ``agent`` response for ``task``."""
    choices = response.get("choices") or [{}]
    content = (choices[0].get("message") or {}).get("content")
    agent = response.get("agent") or {}
    answer = content if agent.get("finish_reason", "solution") == "solution" else None
    steps = agent.get("steps") or []
    usage = response.get("usage") or {}
    return TaskRun(
        name=task["name"],
        domain=task["domain"],
        answer=answer,
        final_message=content,
        reference=score_reference(answer, task),
        lenient=score_lenient(answer, task),
        turns=int(agent.get("turns") or len(steps)),
        finish_reason=agent.get("finish_reason"),
        malformed_turns=count_malformed(steps),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        wall_s=wall_s,
        response=response,
    )


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
    return f"HTTP {response.status_code}: {message or body}"


def run_task(
    client: httpx.Client,
    task: dict[str, Any],
    *,
    model: str,
    max_turns: int = MAX_TURNS,
    max_tokens: int | None = None,
) -> TaskRun:
    """POST one task to ``/v1/agent``; HTTP failures become a failed record, not a crash."""
    started = time.perf_counter()
    try:
        reply = client.post("/v1/agent", json=agent_request(task, model, max_turns, max_tokens))
    except httpx.HTTPError as exc:
        wall = time.perf_counter() - started
        return TaskRun(task["name"], task["domain"], wall_s=wall, error=f"{type(exc).__name__}: {exc}")
    wall = time.perf_counter() - started
    if reply.status_code != 200:
        return TaskRun(task["name"], task["domain"], wall_s=wall, error=_error_text(reply))
    body = reply.json()
    _close_session(client, body)
    return record_response(task, body, wall)


def _close_session(client: httpx.Client, response: dict[str, Any]) -> None:
    """Delete the task's session: it holds a sandbox worker, and the server caps live sessions.

    Without this a full run (82 tasks) would hit the server's session limit (429) long
    before the idle TTL frees anything. A failed delete only costs a worker until the TTL,
    so it is not an error of the task.
    """
    session_id = (response.get("agent") or {}).get("session_id")
    if not session_id:
        return
    with contextlib.suppress(httpx.HTTPError):
        client.delete(f"/v1/agent/sessions/{session_id}")


def run_against_server(
    base_url: str,
    tasks: Iterable[dict[str, Any]],
    *,
    model: str,
    api_key: str | None = None,
    timeout_s: float = 900.0,
    max_turns: int = MAX_TURNS,
    max_tokens: int | None = None,
    on_result: Callable[[TaskRun], None] | None = None,
) -> list[TaskRun]:
    """Run tasks one after another against a server at ``base_url``."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    runs: list[TaskRun] = []
    with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s) as client:
        for task in tasks:
            run = run_task(client, task, model=model, max_turns=max_turns, max_tokens=max_tokens)
            runs.append(run)
            if on_result is not None:
                on_result(run)
    return runs
