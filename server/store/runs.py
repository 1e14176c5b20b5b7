"""Background runs on disk: each run's latest snapshot, its events as sent, how it ended.

A run that was going when the process died (``kill -9``, a power cut, an upgrade) is found
at the next start still marked in progress: ``fail_interrupted`` makes it ``failed`` with
the code ``server_restart``, so a client polling it reads why, never 404 and never
``in_progress`` forever. Its events up to the kill are kept and can be replayed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.store.database import Database

RESTART_ERROR = {
    "code": "server_restart",
    "message": "the server stopped (it was restarted or killed) before this run finished; "
    "its events up to then are kept",
}


@dataclass(frozen=True)
class RunRecord:
    id: str
    kind: str  # the event format: "responses" or "agent"
    owner: str
    status: str  # in_progress, completed, incomplete, failed, cancelled
    response: dict[str, Any]


class RunRecords:
    """The ``runs`` and ``events`` tables."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def begin(self, run_id: str, kind: str, owner: str, response: dict[str, Any]) -> None:
        snapshot = json.dumps(response)
        created = time.time()
        self.database.submit(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO runs (id, kind, owner, created, status, response) "
                "VALUES (?, ?, ?, ?, 'in_progress', ?)",
                (run_id, kind, owner, created, snapshot),
            )
        )

    def add_events(self, run_id: str, events: Sequence[tuple[int, bytes]]) -> None:
        rows = [(run_id, sequence, data) for sequence, data in events]
        self.database.submit(
            lambda db: db.executemany("INSERT OR REPLACE INTO events (run_id, sequence, data) VALUES (?, ?, ?)", rows)
        )

    def update(self, run_id: str, response: dict[str, Any]) -> None:
        snapshot = json.dumps(response)
        self.database.submit(lambda db: db.execute("UPDATE runs SET response = ? WHERE id = ?", (snapshot, run_id)))

    def end(self, run_id: str, status: str, response: dict[str, Any]) -> None:
        snapshot = json.dumps(response)
        ended = time.time()
        self.database.submit(
            lambda db: db.execute(
                "UPDATE runs SET status = ?, response = ?, ended = ? WHERE id = ?", (status, snapshot, ended, run_id)
            )
        )

    async def load(self, run_id: str, owner: str) -> RunRecord | None:
        """The run as last written, if ``owner`` made it (another key's run is absent)."""

        def read(db: sqlite3.Connection) -> RunRecord | None:
            found = db.execute(
                "SELECT kind, status, response FROM runs WHERE id = ? AND owner = ?", (run_id, owner)
            ).fetchone()
            return None if found is None else RunRecord(run_id, found[0], owner, found[1], json.loads(found[2]))

        return await self.database.call(read)

    async def events_after(self, run_id: str, after: int) -> list[tuple[int, bytes]]:
        def read(db: sqlite3.Connection) -> list[tuple[int, bytes]]:
            rows = db.execute(
                "SELECT sequence, data FROM events WHERE run_id = ? AND sequence > ? ORDER BY sequence",
                (run_id, after),
            )
            return [(int(sequence), bytes(data)) for sequence, data in rows]

        return await self.database.call(read)

    def fail_interrupted(self) -> int:
        """At start-up: every run the last process left in progress failed with ``server_restart``."""

        def fail(db: sqlite3.Connection) -> int:
            rows = db.execute("SELECT id, response FROM runs WHERE status = 'in_progress'").fetchall()
            now = time.time()
            for run_id, snapshot in rows:
                response = {**json.loads(snapshot), "status": "failed", "error": RESTART_ERROR}
                db.execute(
                    "UPDATE runs SET status = 'failed', response = ?, ended = ? WHERE id = ?",
                    (json.dumps(response), now, run_id),
                )
            return len(rows)

        return self.database.call_now(fail)
