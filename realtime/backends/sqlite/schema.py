"""What is on disk: the tables, the pragmas an open sets, and the data dir's lock file.

One process owns a data dir: ``take_lock`` takes an exclusive lock on ``doorstep.lock`` in it
(held until the store closes, released by the OS if the process dies) and refuses with
``DataDirLocked`` when another process holds it; ``data_dir_holder`` asks the same question
without taking it, for a clear refusal before a server starts. The database and its -wal/-shm
files are created mode 0600: they hold home addresses and location history.
``synchronous=FULL`` because an ack promises the data survives a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path

from realtime.backends.base import DataDirLocked

LOCK_FILE = "doorstep.lock"
FILE_MODE = 0o600

SCHEMA_VERSION = 3  # 2: the work table; 3: the counters table

SCHEMA = """
CREATE TABLE IF NOT EXISTS bookings (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    technician_id TEXT,
    updated_t REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS bookings_status ON bookings (status);
CREATE INDEX IF NOT EXISTS bookings_technician ON bookings (technician_id);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    t REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_entity ON audit (entity, entity_id, id);
CREATE TABLE IF NOT EXISTS locations (
    technician_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    t REAL NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    acc REAL,
    speed REAL,
    heading REAL,
    received_t REAL NOT NULL,
    PRIMARY KEY (technician_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS locations_time ON locations (technician_id, t);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    reporter_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    updated_t REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents (status);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    t REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status);
CREATE TABLE IF NOT EXISTS work (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    payload BLOB NOT NULL,
    claimed_by TEXT,
    claimed_t REAL,
    done INTEGER NOT NULL DEFAULT 0,
    UNIQUE (queue, dedupe_key)
);
CREATE INDEX IF NOT EXISTS work_pending ON work (queue, done, id);
CREATE TABLE IF NOT EXISTS documents (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
-- Additive counters (Store.add_counters): one row per field, added to in place.
CREATE TABLE IF NOT EXISTS counters (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    field TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (namespace, key, field)
) WITHOUT ROWID;
-- Privacy (realtime/privacy.py). The retention job deletes fixes by time alone, hence the
-- index on t; seq_floor remembers the highest seq of purged or erased fixes, so that
-- highest_seq (resume, idempotent appends) does not go back when the fixes go.
CREATE INDEX IF NOT EXISTS locations_t ON locations (t);
CREATE TABLE IF NOT EXISTS seq_floor (
    technician_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS access_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    t REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS access_audit_subject ON access_audit (subject, id);
CREATE INDEX IF NOT EXISTS access_audit_t ON access_audit (t);
"""


def data_dir_holder(data_dir: Path) -> str | None:
    """Why ``data_dir`` cannot be opened now (another process holds its lock), or None.

    For a clear one-line refusal before a server starts; the store's own lock, taken at
    ``open``, is what really keeps a second process out."""
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _in_use(data_dir, fd)
    finally:
        os.close(fd)  # releases the lock if we took it
    return None


def take_lock(data_dir: Path) -> int:
    """Take the data dir's lock and write our pid in it; the descriptor holds the lock until
    it is closed. Raises ``DataDirLocked``: a second hub on one data dir is a mistake."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        message = _in_use(data_dir, fd)
        os.close(fd)
        raise DataDirLocked(message) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _in_use(data_dir: Path, fd: int) -> str:
    """The refusal, naming the pid the holder wrote in the lock file."""
    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    return f"data dir {data_dir} is in use by another process (pid {holder})"


def connect(path: Path) -> sqlite3.Connection:
    """Open (or create) the database: private files, WAL, FULL sync, the schema applied."""
    # Created 0600 (the umask is process-wide, so only around the open), then chmod for
    # files an older version created world-readable. SQLite gives -wal and -shm the
    # database file's mode.
    old_umask = os.umask(0o077)
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # creates -wal/-shm
    finally:
        os.umask(old_umask)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", FILE_MODE)
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    # One process owns the file: work claimed before this open was claimed by a process
    # that is gone, so it is free again at once.
    db.execute("UPDATE work SET claimed_by = NULL, claimed_t = NULL WHERE done = 0")
    return db
