"""How long records are kept: by age and by the store's total size, oldest first.

OpenAI keeps stored responses for 30 days; so do we by default (``--store-max-age``). The
size limit (``--store-max-mb``) bounds the disk a busy server fills: the oldest records of
every table go first until what is used fits, then freed pages go back to the disk. A run
still in progress is never pruned (its writer is still adding to it).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from server.store.database import Database

#: Tables pruned by age, with the condition that keeps a row (runs in progress stay).
PRUNED = {
    "responses": "1",
    "runs": "status != 'in_progress'",
    "agent_runs": "1",
    "sessions": "closed IS NOT NULL",
}
#: Oldest records deleted in one round while the store is over its size.
BATCH = 64


@dataclass(frozen=True)
class Pruned:
    by_age: int
    by_size: int
    used_bytes: int


def used_bytes(db: sqlite3.Connection) -> int:
    """Bytes the records take in the file (free pages not counted)."""
    pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
    return int(pages * db.execute("PRAGMA page_size").fetchone()[0])


def prune(db: sqlite3.Connection, max_age_s: float, max_bytes: int, now: float | None = None) -> Pruned:
    """Delete what is older than ``max_age_s``, then the oldest until the records fit ``max_bytes``."""
    cutoff = (time.time() if now is None else now) - max_age_s
    by_age = sum(
        db.execute(f"DELETE FROM {table} WHERE created < ? AND {keep}", (cutoff,)).rowcount  # noqa: S608
        for table, keep in PRUNED.items()
    )
    by_size = 0
    while used_bytes(db) > max_bytes:
        union = " UNION ALL ".join(
            f"SELECT created, '{table}', id FROM {table} WHERE {keep}"  # noqa: S608
            for table, keep in PRUNED.items()
        )
        oldest = db.execute(f"SELECT * FROM ({union}) ORDER BY 1 LIMIT ?", (BATCH,)).fetchall()  # noqa: S608
        if not oldest:
            break
        for _created, table, record_id in oldest:
            by_size += db.execute(f"DELETE FROM {table} WHERE id = ?", (record_id,)).rowcount  # noqa: S608
    return Pruned(by_age, by_size, used_bytes(db))


class Retention:
    """The store's limits, applied by ``apply`` (at start-up, then now and then)."""

    def __init__(self, database: Database, max_age_s: float, max_bytes: int) -> None:
        self.database = database
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes

    def apply(self) -> Pruned:
        result = self.database.call_now(lambda db: prune(db, self.max_age_s, self.max_bytes))
        if result.by_age or result.by_size:
            self.database.call_now(lambda db: db.execute("PRAGMA incremental_vacuum").fetchall())
        return result
