"""SQLite store for the embedded backend.

One connection, used from one dedicated thread: SQLite calls block, so they never run on the
event loop, and a single writer thread means no locking surprises. Location history arrives
in batches (see ``realtime/history.py``), so the hot path costs one thread hop per batch,
not per fix. ``synchronous=FULL`` because an ack promises the data survives a crash.

Failures name their cause: a full disk (SQLITE_FULL) raises ``StoreFull`` and the store
reports itself full to the readiness probe until a write fits again; I/O errors, a busy or
unopenable file raise ``StoreUnavailable``. One process owns a data dir: ``open`` takes an
exclusive lock on ``doorstep.lock`` in it (held until ``close``) and refuses with
``DataDirLocked`` when another process holds it. The database and its -wal/-shm files are
created mode 0600: they hold home addresses and location history.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from alerts.incident import AuditEntry, Incident
from alerts.safety_alert import SafetyAlert
from realtime.backends.base import (
    DataDirLocked,
    DuplicateReporterKey,
    StoredFix,
    StoreFull,
    StoreUnavailable,
    WorkItem,
)
from realtime.backends.local_locks import NamedLocks
from realtime.booking import ACTIVE_STATUSES, FINAL_STATUSES, AuditEvent, Booking
from realtime.privacy import AccessEntry

T = TypeVar("T")

log = logging.getLogger("doorstep.sqlite")

LOCK_FILE = "doorstep.lock"
FILE_MODE = 0o600
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


SCHEMA_VERSION = 2  # 2: the work table

SCHEMA = """
CREATE TABLE IF NOT EXISTS bookings (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    technician_id TEXT,
    updated_t REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS bookings_status ON bookings (status);
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

_booking_decoder = msgspec.json.Decoder(Booking)
_event_decoder = msgspec.json.Decoder(AuditEvent)
_incident_decoder = msgspec.json.Decoder(Incident)
_audit_entry_decoder = msgspec.json.Decoder(AuditEntry)
_alert_decoder = msgspec.json.Decoder(SafetyAlert)
_access_decoder = msgspec.json.Decoder(AccessEntry)
_encode = msgspec.json.encode


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
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        return f"data dir {data_dir} is in use by another process (pid {holder})"
    finally:
        os.close(fd)  # releases the lock if we took it
    return None


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doorstep-sqlite")
        self._locks = NamedLocks()
        self._leases: dict[str, str] = {}
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
        self._take_lock()
        try:
            db = self._connect()
        except BaseException:
            self._release_lock()
            raise
        self._db = db

    def _take_lock(self) -> None:
        """Hold the data dir's lock for as long as the store is open (released by the OS if
        the process dies), or refuse: a second hub on one data dir is a mistake."""
        path = self.path.parent / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirLocked(
                f"data dir {self.path.parent} is in use by another process (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_file = fd

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)  # closing the descriptor releases the flock
            self._lock_file = None

    def _connect(self) -> sqlite3.Connection:
        # Created 0600 (the umask is process-wide, so only around the open), then chmod for
        # files an older version created world-readable. SQLite gives -wal and -shm the
        # database file's mode.
        old_umask = os.umask(0o077)
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # creates -wal/-shm
        finally:
            os.umask(old_umask)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", FILE_MODE)
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        # One process owns the file: work claimed before this open was claimed by a process
        # that is gone, so it is free again at once.
        db.execute("UPDATE work SET claimed_by = NULL, claimed_t = NULL WHERE done = 0")
        return db

    async def ping(self) -> None:
        """Raise if the store cannot serve; while it is full, only once a write fits again."""
        await self._run(lambda: self.db.execute("SELECT 1").fetchone())
        if self.full:
            await self._run(self._probe_write)
            log.warning("SQLite store %s has room again", self.path)
            self.full = False

    def _probe_write(self) -> None:
        with _transaction(self.db) as db:
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

    async def save_booking(self, booking: Booking, events: list[AuditEvent]) -> None:
        await self._run(self._save_booking, booking, events)

    def _save_booking(self, booking: Booking, events: list[AuditEvent]) -> None:
        with _transaction(self.db) as db:
            db.execute(
                "INSERT INTO bookings (id, status, technician_id, updated_t, data)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET status=excluded.status,"
                " technician_id=excluded.technician_id, updated_t=excluded.updated_t,"
                " data=excluded.data",
                (
                    booking.id,
                    booking.status.value,
                    booking.technician_id,
                    booking.updated_t,
                    _encode(booking),
                ),
            )
            db.executemany(
                "INSERT INTO audit (entity, entity_id, t, data) VALUES ('booking', ?, ?, ?)",
                [(e.booking_id, e.t, _encode(e)) for e in events],
            )

    async def get_booking(self, booking_id: str) -> Booking | None:
        row = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM bookings WHERE id = ?", (booking_id,)
            ).fetchone()
        )
        return _booking_decoder.decode(row[0]) if row else None

    async def active_bookings(self) -> list[Booking]:
        statuses = [s.value for s in ACTIVE_STATUSES]
        marks = ",".join("?" * len(statuses))
        rows = await self._run(
            lambda: self.db.execute(
                f"SELECT data FROM bookings WHERE status IN ({marks})", statuses
            ).fetchall()
        )
        return [_booking_decoder.decode(r[0]) for r in rows]

    async def booking_events(self, booking_id: str) -> list[AuditEvent]:
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM audit WHERE entity = 'booking' AND entity_id = ? ORDER BY id",
                (booking_id,),
            ).fetchall()
        )
        return [_event_decoder.decode(r[0]) for r in rows]

    async def append_fixes(self, fixes: list[StoredFix]) -> None:
        if fixes:
            await self._run(self._append_fixes, fixes)

    def _append_fixes(self, fixes: list[StoredFix]) -> None:
        with _transaction(self.db) as db:
            db.executemany(
                "INSERT OR IGNORE INTO locations (technician_id, seq, t, lat, lon, acc, speed,"
                " heading, received_t) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [tuple(msgspec.structs.astuple(f)) for f in fixes],
            )

    async def track(
        self, technician_id: str, t_from: float, t_to: float, limit: int
    ) -> list[StoredFix]:
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT technician_id, seq, t, lat, lon, acc, speed, heading, received_t"
                " FROM locations WHERE technician_id = ? AND t >= ? AND t <= ?"
                " ORDER BY t, seq LIMIT ?",
                (technician_id, t_from, t_to, limit),
            ).fetchall()
        )
        return [StoredFix(*row) for row in rows]

    async def highest_seq(self, technician_id: str) -> int:
        row = await self._run(
            lambda: self.db.execute(
                # The stored fixes, or the floor left by fixes purged or erased.
                "SELECT MAX(m) FROM (SELECT MAX(seq) AS m FROM locations WHERE technician_id = ?"
                " UNION ALL SELECT seq FROM seq_floor WHERE technician_id = ?)",
                (technician_id, technician_id),
            ).fetchone()
        )
        return -1 if row is None or row[0] is None else int(row[0])

    async def last_fix(self, technician_id: str) -> StoredFix | None:
        row = await self._run(
            lambda: self.db.execute(
                "SELECT technician_id, seq, t, lat, lon, acc, speed, heading, received_t"
                " FROM locations WHERE technician_id = ? ORDER BY t DESC, seq DESC LIMIT 1",
                (technician_id,),
            ).fetchone()
        )
        return StoredFix(*row) if row else None

    async def save_incident(
        self, incident: Incident, reporter_key: str, audit: list[AuditEntry]
    ) -> None:
        def save() -> None:
            with _transaction(self.db) as db:
                db.execute(
                    "INSERT INTO incidents (id, reporter_key, status, updated_t, data)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                    " status = excluded.status, updated_t = excluded.updated_t,"
                    " data = excluded.data",
                    (
                        incident.id,
                        reporter_key,
                        incident.status.value,
                        incident.updated_t,
                        _encode(incident),
                    ),
                )
                db.executemany(
                    "INSERT INTO audit (entity, entity_id, t, data) VALUES ('incident', ?, ?, ?)",
                    [(incident.id, entry.t, _encode(entry)) for entry in audit],
                )

        try:
            await self._run(save)
        except sqlite3.IntegrityError:
            # The only UNIQUE constraint an upsert on id can still break: the reporter key.
            owner = await self.incident_by_reporter_key(reporter_key)
            raise DuplicateReporterKey(reporter_key, owner.id if owner else None) from None

    async def get_incident(self, incident_id: str) -> Incident | None:
        row = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()
        )
        return _incident_decoder.decode(row[0]) if row else None

    async def incident_by_reporter_key(self, reporter_key: str) -> Incident | None:
        row = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM incidents WHERE reporter_key = ?", (reporter_key,)
            ).fetchone()
        )
        return _incident_decoder.decode(row[0]) if row else None

    async def open_incidents(self) -> list[Incident]:
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM incidents WHERE status IN ('open', 'acknowledged')"
                " ORDER BY updated_t"
            ).fetchall()
        )
        return [_incident_decoder.decode(r[0]) for r in rows]

    async def incident_audit(self, incident_id: str) -> list[AuditEntry]:
        return await self._audit("incident", incident_id)

    async def _audit(self, entity: str, entity_id: str) -> list[AuditEntry]:
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM audit WHERE entity = ? AND entity_id = ? ORDER BY id",
                (entity, entity_id),
            ).fetchall()
        )
        return [_audit_entry_decoder.decode(r[0]) for r in rows]

    async def save_alert(self, alert: SafetyAlert, audit: list[AuditEntry]) -> None:
        def save() -> None:
            with _transaction(self.db) as db:
                db.execute(
                    "INSERT INTO alerts (id, status, t, data) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
                    " data = excluded.data",
                    (alert.id, alert.status.value, alert.t, _encode(alert)),
                )
                db.executemany(
                    "INSERT INTO audit (entity, entity_id, t, data) VALUES ('alert', ?, ?, ?)",
                    [(alert.id, entry.t, _encode(entry)) for entry in audit],
                )

        await self._run(save)

    async def get_alert(self, alert_id: str) -> SafetyAlert | None:
        row = await self._run(
            lambda: self.db.execute("SELECT data FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        )
        return _alert_decoder.decode(row[0]) if row else None

    async def open_alerts(self) -> list[SafetyAlert]:
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM alerts WHERE status = 'open' ORDER BY t, id"
            ).fetchall()
        )
        return [_alert_decoder.decode(r[0]) for r in rows]

    async def alert_audit(self, alert_id: str) -> list[AuditEntry]:
        return await self._audit("alert", alert_id)

    async def put_document(self, namespace: str, key: str, data: bytes) -> None:
        def put() -> None:
            with _transaction(self.db) as db:
                db.execute(
                    "INSERT INTO documents (namespace, key, data) VALUES (?, ?, ?)"
                    " ON CONFLICT (namespace, key) DO UPDATE SET data = excluded.data",
                    (namespace, key, data),
                )

        await self._run(put)

    async def get_document(self, namespace: str, key: str) -> bytes | None:
        row = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM documents WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
        )
        return None if row is None else bytes(row[0])

    async def delete_document(self, namespace: str, key: str) -> bool:
        def delete() -> bool:
            with _transaction(self.db) as db:
                cursor = db.execute(
                    "DELETE FROM documents WHERE namespace = ? AND key = ?", (namespace, key)
                )
                return cursor.rowcount > 0

        return await self._run(delete)

    async def list_documents(self, namespace: str) -> dict[str, bytes]:
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT key, data FROM documents WHERE namespace = ? ORDER BY key", (namespace,)
            ).fetchall()
        )
        return {key: bytes(data) for key, data in rows}

    # ------------------------------------------------------------------ privacy

    # Rows deleted per transaction: the single writer thread serves fix appends between two
    # chunks, so a big purge (the first run after an upgrade) never stalls the acks for long.
    PURGE_CHUNK = 5000

    async def purge_fixes_before(self, cutoff: float) -> int:
        return await self._purge_fixes("t < ?", (cutoff,))

    async def erase_fixes(self, technician_id: str) -> int:
        return await self._purge_fixes("technician_id = ?", (technician_id,))

    async def _purge_fixes(self, where: str, args: tuple[Any, ...]) -> int:
        def chunk() -> int:
            with _transaction(self.db) as db:
                rows = db.execute(
                    f"SELECT technician_id, seq FROM locations WHERE {where} LIMIT ?",
                    (*args, self.PURGE_CHUNK),
                ).fetchall()
                db.executemany(
                    "INSERT INTO seq_floor (technician_id, seq) VALUES (?, ?)"
                    " ON CONFLICT (technician_id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                    rows,
                )
                db.executemany("DELETE FROM locations WHERE technician_id = ? AND seq = ?", rows)
                return len(rows)

        total = 0
        while True:
            deleted = await self._run(chunk)
            total += deleted
            if deleted < self.PURGE_CHUNK:
                return total

    async def purge_closed_incidents_before(self, cutoff: float) -> int:
        def purge() -> int:
            with _transaction(self.db) as db:
                ids = [
                    row[0]
                    for row in db.execute(
                        "SELECT id FROM incidents WHERE status IN ('resolved', 'cancelled')"
                        " AND updated_t < ?",
                        (cutoff,),
                    ).fetchall()
                ]
                db.executemany(
                    "DELETE FROM audit WHERE entity = 'incident' AND entity_id = ?",
                    [(i,) for i in ids],
                )
                db.executemany("DELETE FROM incidents WHERE id = ?", [(i,) for i in ids])
                return len(ids)

        return await self._run(purge)

    async def purge_closed_alerts_before(self, cutoff: float) -> int:
        def purge() -> int:
            with _transaction(self.db) as db:
                # Raised before the cutoff is necessary, not sufficient: closed is acked_t.
                rows = db.execute(
                    "SELECT id, data FROM alerts WHERE status != 'open' AND t < ?", (cutoff,)
                ).fetchall()
                ids = [row[0] for row in rows if _alert_closed_before(row[1], cutoff)]
                db.executemany(
                    "DELETE FROM audit WHERE entity = 'alert' AND entity_id = ?",
                    [(i,) for i in ids],
                )
                db.executemany("DELETE FROM alerts WHERE id = ?", [(i,) for i in ids])
                return len(ids)

        return await self._run(purge)

    async def closed_bookings_before(self, cutoff: float, limit: int) -> list[Booking]:
        statuses = [s.value for s in FINAL_STATUSES]
        marks = ",".join("?" * len(statuses))
        rows = await self._run(
            lambda: self.db.execute(
                f"SELECT data FROM bookings WHERE status IN ({marks}) AND updated_t < ?"
                " AND json_extract(CAST(data AS TEXT), '$.redacted_t') IS NULL"
                " ORDER BY updated_t, id LIMIT ?",
                (*statuses, cutoff, limit),
            ).fetchall()
        )
        return [_booking_decoder.decode(r[0]) for r in rows]

    async def bookings_of(self, role: str, person_id: str) -> list[Booking]:
        if role == "technician":
            query, args = "SELECT data FROM bookings WHERE technician_id = ?", (person_id,)
        else:
            query = (
                "SELECT data FROM bookings"
                " WHERE json_extract(CAST(data AS TEXT), '$.customer_id') = ?"
            )
            args = (person_id,)
        rows = await self._run(lambda: self.db.execute(query + " ORDER BY id", args).fetchall())
        return [_booking_decoder.decode(r[0]) for r in rows]

    async def incidents_about(self, person_id: str) -> list[Incident]:
        # A scan of the incidents table: incidents are few, and this runs on a long track
        # read or an erasure only.
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM incidents WHERE"
                " json_extract(CAST(data AS TEXT), '$.reporter.sub') = ?1"
                " OR json_extract(CAST(data AS TEXT), '$.technician_id') = ?1"
                " OR json_extract(CAST(data AS TEXT), '$.customer_id') = ?1",
                (person_id,),
            ).fetchall()
        )
        incidents = [_incident_decoder.decode(r[0]) for r in rows]
        return sorted(incidents, key=lambda i: (i.created_t, i.id))

    async def append_access(self, entry: AccessEntry) -> None:
        def append() -> None:
            with _transaction(self.db) as db:
                db.execute(
                    "INSERT INTO access_audit (subject, t, data) VALUES (?, ?, ?)",
                    (entry.subject, entry.t, _encode(entry)),
                )

        await self._run(append)

    async def access_log(self, subject: str, limit: int) -> list[AccessEntry]:
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM access_audit WHERE subject = ? ORDER BY id DESC LIMIT ?",
                (subject, limit),
            ).fetchall()
        )
        return [_access_decoder.decode(r[0]) for r in reversed(rows)]

    async def purge_access_before(self, cutoff: float) -> int:
        def purge() -> int:
            with _transaction(self.db) as db:
                return db.execute("DELETE FROM access_audit WHERE t < ?", (cutoff,)).rowcount

        return await self._run(purge)

    # ------------------------------------------------------------------ coordination
    # One process owns the file, so locks and leases are in memory; work items are rows,
    # because a step queued before a crash must still be done after the restart.

    @asynccontextmanager
    async def lock(self, name: str, ttl_s: float) -> AsyncIterator[None]:
        async with self._locks.hold(name):
            yield

    async def hold_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        return self._leases.setdefault(name, holder) == holder

    async def enqueue_work(self, queue: str, dedupe_key: str, payload: bytes) -> bool:
        def add() -> bool:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO work (queue, dedupe_key, payload) VALUES (?, ?, ?)",
                (queue, dedupe_key, payload),
            )
            return cursor.rowcount > 0

        return await self._run(add)

    async def claim_work(
        self, queue: str, consumer: str, count: int, now: float, reclaim_idle_s: float
    ) -> list[WorkItem]:
        def claim() -> list[WorkItem]:
            with _transaction(self.db) as db:
                rows = db.execute(
                    # Idle claims are free again, this consumer's own too (as XAUTOCLAIM
                    # does): an item whose handling failed is retried, not stuck.
                    "SELECT id, payload FROM work WHERE queue = ? AND done = 0 AND ("
                    "claimed_by IS NULL OR claimed_t <= ?) ORDER BY id LIMIT ?",
                    (queue, now - reclaim_idle_s, count),
                ).fetchall()
                db.executemany(
                    "UPDATE work SET claimed_by = ?, claimed_t = ? WHERE id = ?",
                    [(consumer, now, row[0]) for row in rows],
                )
            return [WorkItem(str(row[0]), bytes(row[1])) for row in rows]

        return await self._run(claim)

    async def keep_work(self, queue: str, consumer: str, item_id: str, now: float) -> bool:
        def keep() -> bool:
            cursor = self.db.execute(
                "UPDATE work SET claimed_t = ? WHERE queue = ? AND id = ? AND claimed_by = ?"
                " AND done = 0",
                (now, queue, int(item_id), consumer),
            )
            return cursor.rowcount > 0

        return await self._run(keep)

    async def ack_work(self, queue: str, item_id: str) -> None:
        await self._run(
            lambda: self.db.execute(
                "UPDATE work SET done = 1 WHERE queue = ? AND id = ?", (queue, int(item_id))
            )
        )


class _transaction:
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


def _alert_closed_before(data: bytes, cutoff: float) -> bool:
    alert = _alert_decoder.decode(data)
    closed_t = alert.acked_t if alert.acked_t is not None else alert.t
    return not alert.is_open and closed_t < cutoff
