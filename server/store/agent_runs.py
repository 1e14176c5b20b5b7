"""Agent runs on disk: each run's request and outcome, each step as it happens, and the
sessions they ran in (open, or closed and why).

A step is written when it ends, off the token path (``Database.submit``), so a run killed
halfway keeps the steps it had made. Sessions are recorded so that after a restart, whose
sandboxes died with the old process, a follow-up is told so in words instead of a bare
"not found" (``close_interrupted``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from server.store.database import Database

#: Why a session open when the last process ended is closed now ({id}: the session's).
RESTARTED = (
    "agent session '{id}' ended when the server restarted: its sandbox (variables, files) ended with "
    "the old process. Its runs and steps are kept in the store; start a new session to go on"
)
#: The same, for a session whose last run is known ({run}): fork brings the session back.
RESTARTED_WITH_RUN = (
    RESTARTED + ", or bring this one back where it stood: POST /v1/agent/runs/{run}/fork with "
    '{{"at_step": N}} replays its code up to step N in a new session and goes on from there'
)


class AgentRunRecords:
    """The ``agent_runs``, ``steps`` and ``sessions`` tables; plain JSON in, nothing of the agent's types."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def begin(self, run_id: str, session_id: str, request: dict[str, Any], owner: str = "") -> None:
        text = json.dumps(request, default=str)
        created = time.time()

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR IGNORE INTO sessions (id, created) VALUES (?, ?)", (session_id, created))
            db.execute(
                "INSERT OR IGNORE INTO agent_runs (id, session_id, owner, created, request, bytes) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, session_id, owner, created, text, len(text)),
            )

        self.database.submit(write)

    def step(self, run_id: str, number: int, step: dict[str, Any]) -> None:
        text = json.dumps(step, default=str)
        created = time.time()

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO steps (run_id, number, created, step) VALUES (?, ?, ?, ?)",
                (run_id, number, created, text),
            )
            db.execute("UPDATE agent_runs SET bytes = bytes + ? WHERE id = ?", (len(text), run_id))

        self.database.submit(write)

    def end(self, run_id: str, outcome: dict[str, Any]) -> None:
        text = json.dumps(outcome, default=str)
        ended = time.time()
        self.database.submit(
            lambda db: db.execute(
                "UPDATE agent_runs SET outcome = ?, ended = ?, bytes = bytes + ? WHERE id = ?",
                (text, ended, len(text), run_id),
            )
        )

    def session_closed(self, session_id: str, reason: str) -> None:
        closed = time.time()
        self.database.submit(
            lambda db: db.execute(
                "UPDATE sessions SET closed = ?, reason = ? WHERE id = ? AND closed IS NULL",
                (closed, reason, session_id),
            )
        )

    def close_interrupted(self, keep: int) -> list[tuple[str, str]]:
        """At start-up: sessions the last process left open are closed as ``RESTARTED``; the
        newest ``keep`` closed sessions come back as (id, why) for the session store to tell."""

        def close(db: sqlite3.Connection) -> list[tuple[str, str]]:
            open_ids = [i for (i,) in db.execute("SELECT id FROM sessions WHERE closed IS NULL")]
            now = time.time()
            db.executemany(
                "UPDATE sessions SET closed = ?, reason = ? WHERE id = ?",
                [(now, _restarted(db, i), i) for i in open_ids],
            )
            rows = db.execute("SELECT id, reason FROM sessions ORDER BY closed DESC LIMIT ?", (keep,)).fetchall()
            return [(str(i), str(r)) for i, r in reversed(rows)]

        return self.database.call_now(close)

    async def run_of(self, run_id: str, owner: str) -> dict[str, Any] | None:
        """One run as stored: its request, outcome and steps; None when ``owner`` did not make it."""

        def read(db: sqlite3.Connection) -> dict[str, Any] | None:
            found = db.execute(
                "SELECT session_id, request, outcome, created FROM agent_runs WHERE id = ? AND owner = ?",
                (run_id, owner),
            ).fetchone()
            if found is None:
                return None
            steps = db.execute("SELECT step FROM steps WHERE run_id = ? ORDER BY number", (run_id,))
            return {
                "id": run_id,
                "object": "agent.run.record",
                "created": int(found[3]),
                "session_id": found[0],
                "request": json.loads(found[1]),
                "outcome": json.loads(found[2]) if found[2] else None,
                "steps": [json.loads(s) for (s,) in steps],
            }

        return await self.database.call(read)


def _restarted(db: sqlite3.Connection, session_id: str) -> str:
    """Why ``session_id`` is gone after a restart, naming its last run to fork if it had one."""
    last = db.execute(
        "SELECT id FROM agent_runs WHERE session_id = ? ORDER BY created DESC LIMIT 1", (session_id,)
    ).fetchone()
    if last is None:
        return RESTARTED.format(id=session_id)
    return RESTARTED_WITH_RUN.format(id=session_id, run=last[0])
