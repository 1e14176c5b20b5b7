"""The store's tables, made once per file; ``user_version`` says which layout a file has.

What is kept, and why each table is shaped so:

* ``responses``: stored Responses API responses (what ``previous_response_id`` chains
  through): the response, the conversation it ended, its own input items, the container.
* ``runs``: background runs (Responses and ``/v1/agent``): the latest ``response``
  snapshot a poll answers, and how the run ended; ``events`` holds each run's server-sent
  events as sent, numbered, so a reader resumes from disk after a restart.
* ``agent_runs`` and ``steps``: every agent run (``/v1/agent``, code interpreter) with its
  request and outcome, and each step (thought, code, output, files, forced reasons, seed,
  timings) written as it happens.
* ``sessions``: agent sessions, open or closed and why, so a follow-up after a restart is
  told its sandbox ended with the old process.

Every record has an ``owner`` (the API key's digest; "" without keys) and a ``created``
time (seconds since the epoch) for retention, and its ``bytes`` for the size limit.
"""

from __future__ import annotations

import sqlite3

VERSION = 1

TABLES = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    bytes INTEGER NOT NULL,
    response TEXT NOT NULL,
    history TEXT NOT NULL,
    input_items TEXT NOT NULL,
    container_id TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    ended REAL,
    status TEXT NOT NULL,
    response TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    sequence INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, sequence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    closed REAL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS agent_runs (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    ended REAL,
    bytes INTEGER NOT NULL DEFAULT 0,
    request TEXT NOT NULL,
    outcome TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES agent_runs(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    created REAL NOT NULL,
    step TEXT NOT NULL,
    PRIMARY KEY (run_id, number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS responses_created ON responses(created);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created);
CREATE INDEX IF NOT EXISTS agent_runs_created ON agent_runs(created);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions(created);
"""


def create_schema(connection: sqlite3.Connection) -> None:
    """Make the tables of a new file; refuse a file of another layout (a newer server's)."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, VERSION):
        raise sqlite3.DatabaseError(f"the file has layout version {version}; this server reads version {VERSION}")
    if version == 0:  # before the first table: freed pages can then be given back to the disk
        connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
    connection.executescript(TABLES)
    connection.execute(f"PRAGMA user_version={VERSION}")
