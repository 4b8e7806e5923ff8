"""The Store protocol on Redis: the same durable state as SQLite, shared by several hubs.

A drop-in replacement for ``SQLiteStore`` that passes the same contract tests
(``tests/realtime/backends/test_contract.py``). This module holds the control plane
(bookings, incidents, safety alerts, documents, the access audit, and their retention); the
location history is ``store_history.py``, locks, leases and the work queue are
``store_coordination.py``, the key layout ``keys.py`` and the Lua scripts ``scripts.py``.

The control plane lives under one hash tag, ``{p}``: one slot means one cluster node holds
all of it, which is what lets "write the incident, claim its reporter key, update the open
index, append the audit" be one script, as it is one SQLite transaction.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from typing import ClassVar

import msgspec
from redis.exceptions import ResponseError

from alerts.incident import AuditEntry, Incident, IncidentStatus
from alerts.safety_alert import AlertStatus, SafetyAlert
from realtime.backends.base import DuplicateReporterKey
from realtime.backends.redis.client import COMMAND_TIMEOUT_S, bounded
from realtime.backends.redis.keys import Keys, score
from realtime.backends.redis.scripts import (
    APPEND_FIXES,
    ENQUEUE_WORK,
    ERASE_FIXES,
    HOLD_LEASE,
    INDEXED_VALUES,
    KEEP_WORK,
    PURGE_ALERT,
    PURGE_FIXES,
    PURGE_INCIDENT,
    SAVE_ALERT,
    SAVE_INCIDENT,
)
from realtime.backends.redis.store_coordination import RedisCoordination
from realtime.backends.redis.store_history import RedisHistory
from realtime.booking import AuditEvent, Booking, BookingStatus
from realtime.privacy import AccessEntry, booking_due, involves

_booking_decoder = msgspec.json.Decoder(Booking)
_event_decoder = msgspec.json.Decoder(AuditEvent)
_incident_decoder = msgspec.json.Decoder(Incident)
_audit_entry_decoder = msgspec.json.Decoder(AuditEntry)
_alert_decoder = msgspec.json.Decoder(SafetyAlert)
_access_decoder = msgspec.json.Decoder(AccessEntry)
_encode = msgspec.json.encode

_OPEN_INCIDENT = frozenset({IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED})


class RedisStore(RedisHistory, RedisCoordination):
    """The Store protocol on Redis (layout and atomicity: see ``keys.py``)."""

    SCRIPTS: ClassVar[Mapping[str, str]] = {
        "append_fixes": APPEND_FIXES,
        "indexed_values": INDEXED_VALUES,
        "save_incident": SAVE_INCIDENT,
        "save_alert": SAVE_ALERT,
        "enqueue_work": ENQUEUE_WORK,
        "keep_work": KEEP_WORK,
        "hold_lease": HOLD_LEASE,
        "purge_fixes": PURGE_FIXES,
        "erase_fixes": ERASE_FIXES,
        "purge_incident": PURGE_INCIDENT,
        "purge_alert": PURGE_ALERT,
    }

    def __init__(self, url: str, prefix: str, *, history_retention_s: float | None) -> None:
        super().__init__(url)
        self.keys = Keys(prefix)
        self.history_retention_s = history_retention_s
        self._groups: set[str] = set()  # work streams whose consumer group exists

    @bounded
    async def ping(self) -> None:
        await self.redis.ping()

    async def _indexed_values(self, index: str, data: str, kind: str) -> list[bytes]:
        return await self._scripts["indexed_values"](keys=[index, data], args=[kind])

    # ------------------------------------------------------------------ bookings

    @bounded
    async def save_booking(self, booking: Booking, events: list[AuditEvent]) -> None:
        keys = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            # MULTI/EXEC: the booking, its place in the active index and its audit entries
            # become visible together, as in SQLite's transaction.
            pipe.hset(keys.bookings, booking.id, _encode(booking))
            if booking.active:
                pipe.sadd(keys.bookings_active, booking.id)
                if booking.technician_id:
                    # Added here, removed when read stale (active_bookings_of): the previous
                    # technician of a reassigned booking is not known to this write.
                    pipe.sadd(keys.bookings_active_of(booking.technician_id), booking.id)
            else:
                pipe.srem(keys.bookings_active, booking.id)
            if booking.status is BookingStatus.REQUESTED:
                pipe.sadd(keys.bookings_waiting, booking.id)
            else:
                pipe.srem(keys.bookings_waiting, booking.id)
            for event in events:
                pipe.xadd(keys.booking_audit(booking.id), {"d": _encode(event)})
            await pipe.execute()

    @bounded
    async def get_booking(self, booking_id: str) -> Booking | None:
        raw = await self.redis.hget(self.keys.bookings, booking_id)
        return _booking_decoder.decode(raw) if raw is not None else None

    @bounded
    async def active_bookings(self) -> list[Booking]:
        raws = await self._indexed_values(self.keys.bookings_active, self.keys.bookings, "set")
        return [_booking_decoder.decode(raw) for raw in raws]

    async def bookings_created_between(
        self, t_from: float, t_to: float, limit: int
    ) -> list[Booking]:
        found = []
        async for _, raw in self._hash_values(self.keys.bookings):
            booking = _booking_decoder.decode(raw)
            if t_from <= booking.created_t < t_to:
                found.append(booking)
        found.sort(key=lambda b: (b.created_t, b.id))
        return found[: max(0, limit)]

    async def incidents_created_between(
        self, t_from: float, t_to: float, limit: int
    ) -> list[Incident]:
        found = []
        async for _, raw in self._hash_values(self.keys.incidents):
            incident = _incident_decoder.decode(raw)
            if t_from <= incident.created_t < t_to:
                found.append(incident)
        found.sort(key=lambda i: (i.created_t, i.id))
        return found[: max(0, limit)]

    @bounded
    async def waiting_bookings(self) -> list[Booking]:
        raws = await self._indexed_values(self.keys.bookings_waiting, self.keys.bookings, "set")
        found = [_booking_decoder.decode(raw) for raw in raws]
        return sorted((b for b in found if b.status is BookingStatus.REQUESTED), key=lambda b: b.id)

    @bounded
    async def active_bookings_of(self, technician_id: str) -> list[Booking]:
        key = self.keys.bookings_active_of(technician_id)
        ids = sorted(await self.redis.smembers(key))
        if not ids:
            return []
        raws = await self.redis.hmget(self.keys.bookings, ids)
        mine, stale = [], []
        for booking_id, raw in zip(ids, raws, strict=True):
            booking = _booking_decoder.decode(raw) if raw is not None else None
            if booking is not None and booking.active and booking.technician_id == technician_id:
                mine.append(booking)
            else:
                stale.append(booking_id)  # ended, reassigned or erased since it was added
        if stale:
            # Safe to drop: an ended booking never becomes active again, and assigning one
            # back to this technician happens under the technician's lock, which the
            # callers of this read hold.
            await self.redis.srem(key, *stale)
        return mine

    @bounded
    async def booking_events(self, booking_id: str) -> list[AuditEvent]:
        entries = await self.redis.xrange(self.keys.booking_audit(booking_id))
        return [_event_decoder.decode(fields[b"d"]) for _, fields in entries]

    # ------------------------------------------------------------------ incidents

    @bounded
    async def save_incident(
        self, incident: Incident, reporter_key: str, audit: list[AuditEntry]
    ) -> None:
        keys = self.keys
        try:
            await self._scripts["save_incident"](
                keys=[
                    keys.incidents,
                    keys.incidents_open,
                    keys.incidents_by_reporter,
                    keys.incident_audit(incident.id),
                ],
                args=[
                    incident.id,
                    reporter_key,
                    _encode(incident),
                    "1" if incident.status in _OPEN_INCIDENT else "0",
                    score(incident.updated_t),
                    *(_encode(entry) for entry in audit),
                ],
            )
        except ResponseError as exc:
            if str(exc).startswith("DUPLICATE_REPORTER_KEY"):
                owner = str(exc).split(" ", 1)[1]
                raise DuplicateReporterKey(reporter_key, owner) from None
            raise

    @bounded
    async def get_incident(self, incident_id: str) -> Incident | None:
        raw = await self.redis.hget(self.keys.incidents, incident_id)
        return _incident_decoder.decode(raw) if raw is not None else None

    @bounded
    async def incident_by_reporter_key(self, reporter_key: str) -> Incident | None:
        incident_id = await self.redis.hget(self.keys.incidents_by_reporter, reporter_key)
        if incident_id is None:
            return None
        # Two reads, but a reporter key never moves to another incident, so the second one
        # cannot see a different incident than the first pointed at.
        return await self.get_incident(incident_id.decode())

    @bounded
    async def open_incidents(self) -> list[Incident]:
        raws = await self._indexed_values(self.keys.incidents_open, self.keys.incidents, "zset")
        return [_incident_decoder.decode(raw) for raw in raws]

    @bounded
    async def incident_audit(self, incident_id: str) -> list[AuditEntry]:
        return await self._audit(self.keys.incident_audit(incident_id))

    async def _audit(self, key: str) -> list[AuditEntry]:
        entries = await self.redis.xrange(key)
        return [_audit_entry_decoder.decode(fields[b"d"]) for _, fields in entries]

    # ------------------------------------------------------------------ safety alerts

    @bounded
    async def save_alert(self, alert: SafetyAlert, audit: list[AuditEntry]) -> None:
        keys = self.keys
        await self._scripts["save_alert"](
            keys=[keys.alerts, keys.alerts_t, keys.alerts_open, keys.alert_audit(alert.id)],
            args=[
                alert.id,
                _encode(alert),
                "1" if alert.status is AlertStatus.OPEN else "0",
                score(alert.t),
                *(_encode(entry) for entry in audit),
            ],
        )

    @bounded
    async def get_alert(self, alert_id: str) -> SafetyAlert | None:
        raw = await self.redis.hget(self.keys.alerts, alert_id)
        return _alert_decoder.decode(raw) if raw is not None else None

    @bounded
    async def open_alerts(self) -> list[SafetyAlert]:
        raws = await self._indexed_values(self.keys.alerts_open, self.keys.alerts, "zset")
        return [_alert_decoder.decode(raw) for raw in raws]

    @bounded
    async def alert_audit(self, alert_id: str) -> list[AuditEntry]:
        return await self._audit(self.keys.alert_audit(alert_id))

    # ------------------------------------------------------------------ documents

    @bounded
    async def put_document(self, namespace: str, key: str, data: bytes) -> None:
        await self.redis.hset(self.keys.documents(namespace), key, data)

    @bounded
    async def get_document(self, namespace: str, key: str) -> bytes | None:
        return await self.redis.hget(self.keys.documents(namespace), key)

    @bounded
    async def delete_document(self, namespace: str, key: str) -> bool:
        return bool(await self.redis.hdel(self.keys.documents(namespace), key))

    @bounded
    async def list_documents(self, namespace: str) -> dict[str, bytes]:
        raw = await self.redis.hgetall(self.keys.documents(namespace))
        return {k.decode(): raw[k] for k in sorted(raw)}

    @bounded
    async def add_counters(self, namespace: str, key: str, deltas: Mapping[str, float]) -> None:
        if not deltas:
            return
        # MULTI/EXEC: every field of one trip is added, or (connection lost before EXEC)
        # none; HINCRBYFLOAT adds on the server, so concurrent hubs never overwrite.
        name = self.keys.counters(namespace, key)
        async with self.redis.pipeline(transaction=True) as pipe:
            for field, delta in deltas.items():
                pipe.hincrbyfloat(name, field, float(delta))
            await pipe.execute()

    @bounded
    async def get_counters(self, namespace: str, key: str) -> dict[str, float]:
        raw = await self.redis.hgetall(self.keys.counters(namespace, key))
        return {field.decode(): float(value) for field, value in raw.items()}

    # ------------------------------------------------------------------ privacy
    # Retention and erasure. Bookings and incidents have no time index, so the job scans
    # their hashes (HSCAN, in pages); it runs every few minutes and touches a few keys.
    # (SCAN_COUNT: the page size, from RedisHistory.)

    async def _hash_values(self, key: str) -> AsyncIterator[tuple[bytes, bytes]]:
        async for field, value in self.redis.hscan_iter(key, count=self.SCAN_COUNT):
            yield field, value

    async def purge_closed_incidents_before(self, cutoff: float) -> int:
        due: list[str] = []
        async for field, raw in self._hash_values(self.keys.incidents):
            incident = _incident_decoder.decode(raw)
            if incident.status not in _OPEN_INCIDENT and incident.updated_t < cutoff:
                due.append(field.decode())
        if not due:
            return 0
        wanted = set(due)
        reporter_keys: defaultdict[str, list[str]] = defaultdict(list)
        async for key, owner in self._hash_values(self.keys.incidents_by_reporter):
            if owner.decode() in wanted:
                reporter_keys[owner.decode()].append(key.decode())
        purged = 0
        keys = self.keys
        for incident_id in due:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                purged += await self._scripts["purge_incident"](
                    keys=[
                        keys.incidents,
                        keys.incidents_open,
                        keys.incidents_by_reporter,
                        keys.incident_audit(incident_id),
                    ],
                    args=[incident_id, score(cutoff), *reporter_keys[incident_id]],
                )
        return purged

    async def purge_closed_alerts_before(self, cutoff: float) -> int:
        due = []
        async for field, raw in self._hash_values(self.keys.alerts):
            alert = _alert_decoder.decode(raw)
            closed_t = alert.acked_t if alert.acked_t is not None else alert.t
            if not alert.is_open and closed_t < cutoff:
                due.append(field.decode())
        purged = 0
        keys = self.keys
        for alert_id in due:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                purged += await self._scripts["purge_alert"](
                    keys=[keys.alerts, keys.alerts_t, keys.alerts_open, keys.alert_audit(alert_id)],
                    args=[alert_id, score(cutoff)],
                )
        return purged

    async def closed_bookings_before(
        self, cutoff: float, limit: int, after: tuple[float, str] | None = None
    ) -> list[Booking]:
        found = []
        async for _, raw in self._hash_values(self.keys.bookings):
            booking = _booking_decoder.decode(raw)
            if booking_due(booking, cutoff) and (
                after is None or (booking.updated_t, booking.id) > after
            ):
                found.append(booking)
        found.sort(key=lambda b: (b.updated_t, b.id))
        return found[: max(0, limit)]

    async def bookings_of(self, role: str, person_id: str) -> list[Booking]:
        found = []
        async for _, raw in self._hash_values(self.keys.bookings):
            booking = _booking_decoder.decode(raw)
            person = booking.technician_id if role == "technician" else booking.customer_id
            if person == person_id:
                found.append(booking)
        return sorted(found, key=lambda b: b.id)

    async def incidents_about(self, person_id: str) -> list[Incident]:
        found = []
        async for _, raw in self._hash_values(self.keys.incidents):
            incident = _incident_decoder.decode(raw)
            if involves(incident, person_id):
                found.append(incident)
        return sorted(found, key=lambda i: (i.created_t, i.id))

    @bounded
    async def append_access(self, entry: AccessEntry) -> None:
        await self.redis.xadd(self.keys.access(entry.subject), {"d": _encode(entry)})

    @bounded
    async def access_log(self, subject: str, limit: int) -> list[AccessEntry]:
        entries = await self.redis.xrevrange(self.keys.access(subject), count=limit)
        return [_access_decoder.decode(fields[b"d"]) for _, fields in reversed(entries)]

    async def purge_access_before(self, cutoff: float) -> int:
        purged = 0
        async for key in self.redis.scan_iter(match=self.keys.access("*"), count=self.SCAN_COUNT):
            # Entries are appended in time order: delete from the head while they are old.
            while True:
                entries = await self.redis.xrange(key, count=self.SCAN_COUNT)
                old = [i for i, f in entries if _access_decoder.decode(f[b"d"]).t < cutoff]
                if old:
                    purged += await self.redis.xdel(key, *old)
                if len(old) < self.SCAN_COUNT:
                    break
        return purged
