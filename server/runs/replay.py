"""Replay: run a recorded run's code again in a fresh sandbox, without the model, and say
step by step whether each output matches the record.

Why: "would it do the same again?" is the first question about an agent's answer. A step
whose output differs is where the run depends on something outside its code: the clock, an
unseeded random number, the network, a file that is gone. Outputs match ``exact``ly, or
``normalized`` (object addresses such as ``0x7f3a...`` differ from one process to another
and mean nothing), or they ``differ``, with both shown.

What a replay never does: generate (no model), or call a tool. The fresh session has no host
tools, so code that called one (an MCP server's, a client's) fails there instead of acting
on the world a second time; that step is reported as differing. Every step that ran code in
the run is replayed in its order, left-out ones included (they ran, and their effects on the
interpreter's state are part of what came after). A run that continued an earlier session
starts here without that session's state, which the answer says.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from sandbox.executor import on_own_thread
from sandbox.result import ExecResult
from server.agent.sessions import Session, SessionStore

Match = Literal["exact", "normalized", "differs"]
#: What differs between two processes running the same code and means nothing.
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
COMPARED = ("stdout", "stderr", "error")


def normalized(text: str | None) -> str | None:
    return None if text is None else _ADDRESS.sub("0x…", text)


def compare(recorded: dict[str, Any], replayed: dict[str, Any]) -> Match:
    if all(recorded.get(k) == replayed.get(k) for k in COMPARED):
        return "exact"
    if all(normalized(recorded.get(k)) == normalized(replayed.get(k)) for k in COMPARED):
        return "normalized"
    return "differs"


def ran(step: dict[str, Any]) -> bool:
    """Whether the recorded step ran code (an answer, or a repeat the loop did not run, did not)."""
    return step.get("observation") is not None and bool((step.get("action") or {}).get("code"))


async def replay_steps(session: Session, steps: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
    """Run the code of each of ``steps`` that ran, in order, in ``session``; each one's
    comparison with its record (``server.runs.fork`` replays a run's head with it too)."""
    replayed = []
    for step in filter(ran, steps):
        code = step["action"]["code"]
        result: ExecResult = await on_own_thread(session.executor.run, code, timeout_s, name="sandbox-run")
        recorded = {k: step["observation"].get(k) for k in COMPARED}
        again = {"stdout": result.stdout, "stderr": result.stderr, "error": result.error}
        replayed.append(
            {
                "index": step["index"],
                "code": code,
                "match": compare(recorded, again),
                "recorded": recorded,
                "replayed": again,
            }  # fmt: skip
        )
    return replayed


async def replay(record: dict[str, Any], sessions: SessionStore, timeout_s: float) -> dict[str, Any]:
    """Re-execute ``record``'s code in a new session (closed afterwards); the comparison."""
    session = await sessions.create()
    try:
        replayed = await replay_steps(session, record.get("steps") or [], timeout_s)
    finally:
        await sessions.delete_off_loop(session.id)
    diverged = next((s["index"] for s in replayed if s["match"] == "differs"), None)
    continued = not (record.get("request") or {}).get("new_session", True)
    return {
        "object": "agent.run.replay",
        "run_id": record.get("id"),
        "steps": replayed,
        "matches": diverged is None,
        "diverged_at": diverged,
        "note": "the run continued an earlier session, whose state this replay starts without" if continued else None,
    }
