"""SQLite store for the embedded backend: the Store protocol on one file, for one machine.

This module holds the bookings, documents and the access audit, and their retention; the
location history is ``store_history.py``, incidents and safety alerts ``store_safety.py``,
locks, leases and the work queue ``store_coordination.py``. The connection, its thread and
what its errors mean are ``connection.py``; the tables and the data dir lock ``schema.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from realtime.backends.sqlite.connection import transaction
from realtime.backends.sqlite.store_coordination import SQLiteCoordination
from realtime.backends.sqlite.store_history import SQLiteHistory
from realtime.backends.sqlite.store_safety import SQLiteSafety
from realtime.booking import ACTIVE_STATUSES, FINAL_STATUSES, AuditEvent, Booking, BookingStatus
from realtime.privacy import AccessEntry

_booking_decoder = msgspec.json.Decoder(Booking)
_event_decoder = msgspec.json.Decoder(AuditEvent)
_access_decoder = msgspec.json.Decoder(AccessEntry)
_encode = msgspec.json.encode


class SQLiteStore(SQLiteHistory, SQLiteSafety, SQLiteCoordination):
    """The Store protocol on SQLite (one connection on its own thread: ``connection.py``)."""

    async def save_booking(self, booking: Booking, events: list[AuditEvent]) -> None:
        await self._run(self._save_booking, booking, events)

    def _save_booking(self, booking: Booking, events: list[AuditEvent]) -> None:
        with transaction(self.db) as db:
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

    async def bookings_created_between(
        self, t_from: float, t_to: float, limit: int
    ) -> list[Booking]:
        # A scan (created_t is in the document): statistics are rare reads over a period.
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM bookings WHERE"
                " json_extract(CAST(data AS TEXT), '$.created_t') >= ?"
                " AND json_extract(CAST(data AS TEXT), '$.created_t') < ?"
                " ORDER BY json_extract(CAST(data AS TEXT), '$.created_t'), id LIMIT ?",
                (t_from, t_to, limit),
            ).fetchall()
        )
        return [_booking_decoder.decode(r[0]) for r in rows]

    async def waiting_bookings(self) -> list[Booking]:
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM bookings WHERE status = ? ORDER BY id",
                (BookingStatus.REQUESTED.value,),
            ).fetchall()
        )
        return [_booking_decoder.decode(r[0]) for r in rows]

    async def active_bookings_of(self, technician_id: str) -> list[Booking]:
        statuses = [s.value for s in ACTIVE_STATUSES]
        marks = ",".join("?" * len(statuses))
        rows = await self._run(
            lambda: self.db.execute(
                f"SELECT data FROM bookings WHERE technician_id = ? AND status IN ({marks})",
                [technician_id, *statuses],
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

    async def put_document(self, namespace: str, key: str, data: bytes) -> None:
        def put() -> None:
            with transaction(self.db) as db:
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
            with transaction(self.db) as db:
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

    async def add_counters(self, namespace: str, key: str, deltas: Mapping[str, float]) -> None:
        rows = [(namespace, key, field, float(delta)) for field, delta in deltas.items()]

        def add() -> None:
            # One transaction: a hub that dies mid-way has added all of its trip or nothing.
            with transaction(self.db) as db:
                db.executemany(
                    "INSERT INTO counters (namespace, key, field, value) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (namespace, key, field) DO UPDATE"
                    " SET value = value + excluded.value",
                    rows,
                )

        if rows:
            await self._run(add)

    async def get_counters(self, namespace: str, key: str) -> dict[str, float]:
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT field, value FROM counters WHERE namespace = ? AND key = ?",
                (namespace, key),
            ).fetchall()
        )
        return {field: float(value) for field, value in rows}

    # ------------------------------------------------------------------ privacy

    async def closed_bookings_before(
        self, cutoff: float, limit: int, after: tuple[float, str] | None = None
    ) -> list[Booking]:
        statuses = [s.value for s in FINAL_STATUSES]
        marks = ",".join("?" * len(statuses))
        page, page_args = "", ()
        if after is not None:
            page, page_args = " AND (updated_t, id) > (?, ?)", after
        rows = await self._run(
            lambda: self.db.execute(
                f"SELECT data FROM bookings WHERE status IN ({marks}) AND updated_t < ?"
                " AND json_extract(CAST(data AS TEXT), '$.redacted_t') IS NULL"
                f"{page} ORDER BY updated_t, id LIMIT ?",
                (*statuses, cutoff, *page_args, limit),
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

    async def append_access(self, entry: AccessEntry) -> None:
        def append() -> None:
            with transaction(self.db) as db:
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
            with transaction(self.db) as db:
                return db.execute("DELETE FROM access_audit WHERE t < ?", (cutoff,)).rowcount

        return await self._run(purge)
