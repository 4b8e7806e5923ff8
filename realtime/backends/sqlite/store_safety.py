"""The store's safety records in SQLite: SOS incidents, safety alerts, their audit and retention.

An incident's write, its reporter key (the UNIQUE column that makes an SOS idempotent) and
its audit entries are one transaction, as are an alert's.
"""

from __future__ import annotations

import sqlite3

import msgspec

from alerts.incident import AuditEntry, Incident
from alerts.safety_alert import SafetyAlert
from realtime.backends.base import DuplicateReporterKey
from realtime.backends.sqlite.connection import SQLiteConnection, transaction

_incident_decoder = msgspec.json.Decoder(Incident)
_audit_entry_decoder = msgspec.json.Decoder(AuditEntry)
_alert_decoder = msgspec.json.Decoder(SafetyAlert)
_encode = msgspec.json.encode


class SQLiteSafety(SQLiteConnection):
    """The incidents and alerts part of ``SQLiteStore``."""

    async def save_incident(
        self, incident: Incident, reporter_key: str, audit: list[AuditEntry]
    ) -> None:
        def save() -> None:
            with transaction(self.db) as db:
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

    async def incidents_created_between(
        self, t_from: float, t_to: float, limit: int
    ) -> list[Incident]:
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT data FROM incidents WHERE"
                " json_extract(CAST(data AS TEXT), '$.created_t') >= ?"
                " AND json_extract(CAST(data AS TEXT), '$.created_t') < ?"
                " ORDER BY json_extract(CAST(data AS TEXT), '$.created_t'), id LIMIT ?",
                (t_from, t_to, limit),
            ).fetchall()
        )
        return [_incident_decoder.decode(r[0]) for r in rows]

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
            with transaction(self.db) as db:
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

    # ------------------------------------------------------------------ privacy

    async def purge_closed_incidents_before(self, cutoff: float) -> int:
        def purge() -> int:
            with transaction(self.db) as db:
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
            with transaction(self.db) as db:
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


def _alert_closed_before(data: bytes, cutoff: float) -> bool:
    alert = _alert_decoder.decode(data)
    closed_t = alert.acked_t if alert.acked_t is not None else alert.t
    return not alert.is_open and closed_t < cutoff
