"""One SQLite database on a thread of its own: the server's records outlive its process.

Why a thread: a write that waits on the disk must never wait on the event loop, where tokens
are streamed. Every statement runs on one thread that owns the connection, in the order it
was handed over, so a read handed over after a write sees it (no cache in front, nothing to
keep coherent). ``submit`` hands work over and returns at once (a step's record, an event);
``call`` is awaited (a read, or a write the client is about to be told is done).

The file is created owner-read/write only (it holds whatever users sent and code printed)
and runs in WAL mode with ``synchronous=NORMAL``: a committed write survives the process
being killed (``kill -9``); only a crash of the machine itself can lose the last commits.
``Database.in_memory()`` is the same database without a file (``--store none``, and the
tests' fake): the same statements, lost when the process ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from server.store.schema import create_schema

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]


class StoreError(RuntimeError):
    """The store's file cannot be opened or used (a bad path, another version's schema)."""


class Database:
    """The connection, reached only through ``call`` and ``submit``."""

    def __init__(self, path: Path | None) -> None:
        """``path``: the database file (created, with its folder, if missing); None: in memory."""
        self.path = path
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._closed = False
        self._lock: int | None = None
        try:
            self._connection = self._thread.submit(self._open).result()
        except BaseException:
            self._thread.shutdown(wait=False)
            raise

    @classmethod
    def in_memory(cls) -> Database:
        return cls(None)

    def _open(self) -> sqlite3.Connection:
        target = ":memory:"
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            except OSError as exc:
                raise StoreError(f"cannot create the store {self.path}: {exc.strerror or exc}") from exc
            self._lock = _hold_alone(self.path)
            target = str(self.path)
        try:
            connection = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            create_schema(connection)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot use the store {self.path or ':memory:'}: {exc}") from exc
        return connection

    def _run(self, work: Work[T]) -> T:
        """One transaction per piece of work: all of it lands, or none."""
        self._connection.execute("BEGIN")
        try:
            result = work(self._connection)
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")
        return result

    def call(self, work: Work[T]) -> asyncio.Future[T]:
        """Run ``work(connection)`` on the store's thread, in one transaction; await its result."""
        return asyncio.wrap_future(self._thread.submit(self._run, work))

    def call_now(self, work: Work[T]) -> T:
        """``call`` for code off the event loop (start-up, shutdown, benchmarks): waits here."""
        return self._thread.submit(self._run, work).result()

    def submit(self, work: Work[object]) -> None:
        """Run ``work`` on the store's thread and do not wait; a failure is logged, not raised
        (a record that cannot be written must not stop the run it records)."""
        if self._closed:
            return
        self._thread.submit(self._run, work).add_done_callback(_log_failure)

    def size_bytes(self) -> int:
        """The database's size on disk, its write-ahead log included (0 in memory)."""
        if self.path is None:
            return 0
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    def close(self) -> None:
        """Write what was handed over, checkpoint the log into the file, close."""
        if self._closed:
            return
        self._closed = True

        def finish() -> None:
            try:
                self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.DatabaseError:
                log.exception("could not checkpoint the store")
            self._connection.close()

        self._thread.submit(finish).result()
        self._thread.shutdown(wait=True)
        if self._lock is not None:
            os.close(self._lock)  # the lock goes with its descriptor


def _hold_alone(path: Path) -> int:
    """Lock ``path`` for this process's life (a descriptor held open, released when the
    process ends, however it ends).

    Why: a second server on the same store would, at its start, fail the first one's runs
    in progress as interrupted, and both would prune each other's records."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StoreError(
            f"the store {path} is in use by another codeact-server; give this one its own "
            "(--store PATH) or none (--store none)"
        ) from exc
    return fd


def _log_failure(future: concurrent.futures.Future[object]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("a store write failed: %s: %s", type(exc).__name__, exc)
