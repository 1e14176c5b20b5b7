"""The server's records on disk: stored responses, background runs and their events, agent
runs with their steps, sessions. One SQLite file (``--store``), or memory (``--store none``).

Who may import it: the API (``server.api``: routes read and write records), the app's
composition and the run recorder (``server.recording``). It imports nothing of the server's
own: records go in and come out as plain JSON, so the agent and the sandbox never see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from server.store.agent_runs import AgentRunRecords
from server.store.database import Database, StoreError
from server.store.responses import ResponseRecords, StoredResponse
from server.store.retention import Pruned, Retention
from server.store.runs import RESTART_ERROR, RunRecord, RunRecords

__all__ = [
    "RESTART_ERROR",
    "AgentRunRecords",
    "Database",
    "Pruned",
    "ResponseRecords",
    "RunRecord",
    "RunRecords",
    "Store",
    "StoreError",
    "StoredResponse",
]


@dataclass(frozen=True)
class Store:
    """The tables, grouped by what they hold, over one database."""

    database: Database
    responses: ResponseRecords
    runs: RunRecords
    agent_runs: AgentRunRecords
    retention: Retention

    @classmethod
    def open(cls, path: Path | None, *, max_age_s: float, max_bytes: int) -> Store:
        """The store at ``path`` (None: in memory), its limits applied once before use."""
        database = Database(path)
        store = cls(
            database,
            ResponseRecords(database),
            RunRecords(database),
            AgentRunRecords(database),
            Retention(database, max_age_s, max_bytes),
        )
        store.retention.apply()
        return store

    def close(self) -> None:
        self.database.close()
