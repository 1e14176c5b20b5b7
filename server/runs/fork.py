"""Fork: a new run that starts where a stored run stood after step N, and goes on live.

Steps 0..N are replayed (their code run again in a fresh sandbox, without the model and
without any tool, as ``server.runs.replay`` does), and the session's conversation is rebuilt
from the record as the model read it then (left-out turns stay out); then the loop continues
with whatever options the fork request gives. A session lost to a restart or closed for room
comes back this way, and "what if this run had had another setting from step N on" is one
request.

Refused (``ForkError``, a 400 naming ``at_step``): a step that does not exist, a step at or
after the run's answer (nothing is left to continue), and a run that continued an earlier
session (its earlier state is not in the record).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from models.engine.usage import Usage
from server.agent.sessions import Session, SessionStore
from server.agent.steps import Action, Observation, Step
from server.runs.replay import replay_steps


class ForkError(ValueError):
    """The record cannot be forked at that step; the message says why."""


def check_forkable(record: dict[str, Any], at_step: int) -> list[dict[str, Any]]:
    """The steps 0..``at_step`` to replay; ``ForkError`` when the run cannot go on from there."""
    if not (record.get("request") or {}).get("new_session", False):
        raise ForkError("this run continued an earlier session, whose state is not in its record: fork its first run")
    steps = record.get("steps") or []
    if not 0 <= at_step < len(steps):
        raise ForkError(f"at_step {at_step} is not a step of this run (it has steps 0 to {len(steps) - 1})")
    head = steps[: at_step + 1]
    answered = [s["index"] for s in head if s["action"].get("type") == "solution" and not s.get("left_out")]
    if answered:
        raise ForkError(f"step {answered[0]} is the run's answer: fork at a step before it")
    return head


def step_from_record(data: dict[str, Any]) -> Step:
    """A recorded step as the session keeps it (host calls are summed up, not rebuilt)."""
    observation = None
    if data.get("observation") is not None:
        known = {f.name for f in fields(Observation)} - {"host_calls"}
        observation = Observation(**{k: v for k, v in data["observation"].items() if k in known})
    known_step = {f.name for f in fields(Step)} - {"action", "observation", "turn_usage"}
    known_usage = {f.name for f in fields(Usage)}
    return Step(
        **{k: v for k, v in data.items() if k in known_step},
        action=Action(**data["action"]),
        observation=observation,
        turn_usage=Usage(**{k: v for k, v in (data.get("turn_usage") or {}).items() if k in known_usage}),
    )


def history(record: dict[str, Any], head: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The conversation the model had read after the last step of ``head``."""
    messages = [dict(m) for m in (record.get("request") or {}).get("messages") or []]
    for step in head:
        if step.get("left_out"):
            continue
        messages.append({"role": "assistant", "content": step["raw"]})
        observation = step.get("observation")
        if observation is not None:
            messages.append({"role": "user", "content": observation.get("text", "")})
    return messages


async def fork_session(
    record: dict[str, Any], at_step: int, sessions: SessionStore, timeout_s: float
) -> tuple[Session, list[dict[str, Any]]]:
    """A new session standing where the run stood after ``at_step``, and how its replay matched."""
    head = check_forkable(record, at_step)
    session = await sessions.create()
    try:
        replayed = await replay_steps(session, head, timeout_s)
    except BaseException:
        sessions.delete(session.id)
        raise
    session.messages.extend(history(record, head))
    session.steps.extend(step_from_record(s) for s in head)
    return session, [{"index": step["index"], "match": step["match"]} for step in replayed]
