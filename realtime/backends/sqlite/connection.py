"""One connection, used from one dedicated thread, and what its errors mean.

SQLite calls block, so they never run on the event loop, and a single writer thread means no
locking surprises. Location history arrives in batches (see ``realtime/history.py``), so the
hot path costs one thread hop per batch, not per fix.

Failures name their cause: a full disk (SQLITE_FULL) raises ``StoreFull`` and the store
reports itself full to the readiness probe until a write fits again; I/O errors, a busy or
unopenable file raise ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from realtime.backends.base import StoreFull, StoreUnavailable
from realtime.backends.sqlite.schema import connect, take_lock

log = logging.getLogger("doorstep.sqlite")

# Primary result codes (the low byte of an extended code) that mean "the store cannot do
# this now" rather than a bug: busy/locked, I/O error, cannot open, no lock protocol.
_UNAVAILABLE_CODES = {5, 6, 10, 14, 15}
_SQLITE_FULL = 13
# The readiness probe of a full store writes this much, then deletes it: "does a write of
# about a history batch fit again?"
_PROBE_BYTES = 16 * 1024


def translate(exc: sqlite3.Error) -> Exception:
    """A sqlite3 error as the store error it means (``StoreFull``, ``StoreUnavailable``),
    or itself when it is something else (a bug: a constraint, bad SQL)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == _SQLITE_FULL or "database or disk is full" in str(exc):
        return StoreFull(f"SQLite: {exc}")
    if primary in _UNAVAILABLE_CODES or isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(f"SQLite: {exc}")
    return exc


class SQLiteConnection:
    """The store's connection, its thread and its data dir lock; the ``store*`` mixins add
    the queries."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doorstep-sqlite")
        self._lock_file: int | None = None
        # Set by a write refused for lack of space; the readiness probe clears it once a
        # write fits again.
        self.full = False

    async def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            error = translate(exc)
            if error is exc:
                raise
            if isinstance(error, StoreFull):
                if not self.full:
                    log.error("SQLite store %s is full: %s", self.path, exc)
                self.full = True
            raise error from exc

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Held for as long as the store is open (released by the OS if the process dies).
        self._lock_file = take_lock(self.path.parent)
        try:
            db = connect(self.path)
        except BaseException:
            self._release_lock()
            raise
        self._db = db

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)  # closing the descriptor releases the flock
            self._lock_file = None

    async def ping(self) -> None:
        """Raise if the store cannot serve; while it is full, only once a write fits again."""
        await self._run(lambda: self.db.execute("SELECT 1").fetchone())
        if self.full:
            await self._run(self._probe_write)
            log.warning("SQLite store %s has room again", self.path)
            self.full = False

    def _probe_write(self) -> None:
        with transaction(self.db) as db:
            db.execute(
                "INSERT OR REPLACE INTO documents (namespace, key, data) VALUES (?, ?, ?)",
                ("_probe", "space", b"\0" * _PROBE_BYTES),
            )
        self.db.execute("DELETE FROM documents WHERE namespace = '_probe'")

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)
        self._release_lock()


class transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        if not exc_type:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error:
                self._rollback()  # e.g. SQLITE_FULL at commit: raise that, not a rollback's
                raise
            return
        self._rollback()

    def _rollback(self) -> None:
        """Roll back if a transaction is still open: after SQLITE_FULL (or IOERR) SQLite may
        have rolled it back already, and "cannot rollback - no transaction is active" would
        then hide the real cause."""
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                log.warning("SQLite rollback failed", exc_info=True)
