"""Stored Responses API responses: what ``previous_response_id`` continues from.

A record is its owner's alone: read or deleted with another API key it is absent (the same
404 as an id that never existed, so a key cannot probe for another's ids).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from server.store.database import Database


@dataclass
class StoredResponse:
    response: dict[str, Any]
    history: list[dict[str, Any]]  # the conversation it ended, its output included (no instructions)
    input_items: list[dict[str, Any]]  # this request's own input, as items with ids
    container_id: str | None = None  # the agent session a code_interpreter response ran in
    owner: str = ""  # the API key's digest that made it; "" without keys


class ResponseRecords:
    """Stored responses by id, in the store's database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def put(self, entry: StoredResponse) -> Any:
        """Store ``entry`` (replacing one of the same id); await the result to know it is on disk."""
        row = (
            entry.response["id"],
            entry.owner,
            time.time(),
            json.dumps(entry.response),
            json.dumps(entry.history),
            json.dumps(entry.input_items),
            entry.container_id,
        )
        size = sum(len(v) for v in row[3:6] if isinstance(v, str))

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO responses (id, owner, created, response, history, input_items, "
                "container_id, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, size),
            )

        return self.database.call(write)

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        def read(db: sqlite3.Connection) -> StoredResponse | None:
            found = db.execute(
                "SELECT response, history, input_items, container_id FROM responses WHERE id = ? AND owner = ?",
                (response_id, owner),
            ).fetchone()
            if found is None:
                return None
            return StoredResponse(json.loads(found[0]), json.loads(found[1]), json.loads(found[2]), found[3], owner)

        return await self.database.call(read)

    async def delete(self, response_id: str, owner: str) -> bool:
        def remove(db: sqlite3.Connection) -> bool:
            """The response and, for a background one, its run and events: nothing of it stays."""
            gone = db.execute("DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner)).rowcount
            ran = db.execute(
                "DELETE FROM runs WHERE id = ? AND owner = ? AND status != 'in_progress'", (response_id, owner)
            ).rowcount
            return gone + ran > 0

        return await self.database.call(remove)
