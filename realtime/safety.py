"""The safety desk: SOS in, incidents to operators, escalation, notifications, never lost.

Thin I/O around the pure cores of ``alerts/`` (incident state machine, escalation policy):

* **Durable before acknowledged.** An SOS is written to the store (``synchronous=FULL``)
  before the reporter gets ``sos_ack`` / HTTP 201; if the write fails (after a few quick
  tries of the hub's own) the reporter gets an error and retries. The client's SOS id makes
  retries idempotent (one incident), and an incident found stored but never announced (a
  reply lost after the write) is announced then.
* **Operators first.** Incidents go out on the operators' channel in the urgent lane of
  every outbox: ahead of positions, never conflated or dropped (a connection too slow for
  them is closed and resyncs from the snapshot).
* **Escalation survives restarts and happens once among several hubs**: steps are durable
  work on the store's queue (``realtime/escalation.py``); notifications and their records
  are ``realtime/incident_deliveries.py``.
* **Every change is a locked read-modify-write of the stored incident.** Acknowledge,
  resolve, cancel, trail points and delivery records take the store's lock on the incident
  and apply to what is stored, not to this hub's mirror, then tell the other hubs
  (``realtime.cluster``) to re-read it.
* **Notifications never block the hub.** Deliveries run in their own tasks, with timeouts
  and retries; every attempt is recorded on the incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import tenacity

from alerts import incident as core
from alerts.contacts import EmergencyContact
from alerts.escalation import EscalationPolicy
from alerts.incident import (
    Incident,
    IncidentAction,
    IncidentLocation,
    IncidentStatus,
    Outcome,
    Reporter,
    TrailPoint,
)
from realtime import protocol as wire
from realtime.aio import stop_tasks
from realtime.auth import Principal, Role
from realtime.backends.base import (
    Bus,
    BusMessage,
    DuplicateReporterKey,
    Store,
    store_error_kind,
)
from realtime.booking import Booking
from realtime.channels import OPS_CHANNEL
from realtime.cities import Cities
from realtime.cluster import LOCK_TTL_S, Entity
from realtime.escalation import Escalation
from realtime.incident_deliveries import SYSTEM_ROLE, Deliveries
from realtime.ingest import check_coordinates
from realtime.metrics import Metrics
from realtime.notifiers import Notifiers
from realtime.ports import (
    AcceptedFixes,
    Announce,
    BookingView,
    Clock,
    FleetView,
    Spawn,
)
from realtime.profiles import Profiles
from realtime.protocol import ErrorCode, ProtocolError

log = logging.getLogger("doorstep.safety")

CONTACTS = "contacts"
# Trails are kept in memory at full rate and written at most this often (a crash loses at
# most this much trail; the incident itself is always written before anyone is told).
TRAIL_FLUSH_S = 2.0
SYSTEM_ACTOR = "system:escalation"
# How often a hub looks for due steps and for safety work (its own or another hub's).
WORK_POLL_S = 0.25
# Tries at storing an SOS while the store is unavailable, the first retry after this long
# (then doubling): about 0.3 s in all before the reporter gets ``sos_not_stored``.
SOS_STORE_ATTEMPTS = 3
SOS_STORE_RETRY_S = 0.1
# An operator's answer to an open incident, for its time-to-acknowledge: an ack, or a
# resolve without one (they made sure at once). A reporter's cancel is no answer.
ANSWERS = frozenset({IncidentAction.ACK, IncidentAction.RESOLVE})


def _store_blinked(exc: BaseException) -> bool:
    """Worth another try at once: the store is unreachable (not full, not a refusal)."""
    return store_error_kind(exc) == "unavailable"


class IncidentNotFound(Exception):
    pass


class BookingClosed(ProtocolError):
    """A customer's SOS on a booking that ended more than the grace window ago."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.BOOKING_CLOSED, message)


def _address(booking: Booking | None) -> IncidentLocation | None:
    """The booking's destination as an incident location (where the visit is)."""
    if booking is None:
        return None
    return IncidentLocation(
        lat=booking.destination.lat,
        lon=booking.destination.lon,
        t=booking.created_t,
        source="booking_address",
    )


def reporter_channel(role: str, sub: str) -> str:
    """Where a reporter's own SOS status goes (their technician or booking sockets)."""
    return f"reporter:{role}:{sub}"


def reporter_key(role: str, sub: str, client_id: str) -> str:
    return f"{role}:{sub}:{client_id}"


def contacts_key(role: str, sub: str) -> str:
    return f"{role}:{sub}"


@dataclass(frozen=True)
class SafetyConfig:
    """The safety settings the desk works by (``realtime/settings.py`` has their meaning)."""

    escalation_t1_s: float
    escalation_t2_s: float
    max_future_skew_s: float
    customer_sos_grace_s: float
    sos_cancel_grace_s: float
    work_reclaim_idle_s: float


class SafetyDesk:
    def __init__(
        self,
        *,
        config: SafetyConfig,
        notifiers: Notifiers,
        hub_id: str,
        store: Store,
        bus: Bus,
        announce: Announce,
        bookings: BookingView,
        fleet: FleetView,
        profiles: Profiles,
        cities: Cities,
        metrics: Metrics,
        spawn: Spawn,
        clock: Clock,
    ) -> None:
        self.config = config
        self.notifiers = notifiers
        self.hub_id = hub_id
        self.store = store
        self.bus = bus
        self.announce = announce
        self.bookings = bookings
        self.fleet = fleet
        self.profiles = profiles
        self.metrics = metrics
        self.spawn = spawn
        self.clock = clock
        self.cities = cities
        self.policy = EscalationPolicy.from_timers(
            t1_s=config.escalation_t1_s, t2_s=config.escalation_t2_s
        )
        self._policies: dict[tuple[float, float], EscalationPolicy] = {}
        self._open: dict[str, Incident] = {}  # mirror of the stored open incidents
        self._keys: dict[str, str] = {}  # incident id -> reporter key
        # Trail points received but not yet written to the incident (written every
        # TRAIL_FLUSH_S: a crash loses at most that much trail, never the incident).
        self._trail: dict[str, list[TrailPoint]] = {}
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._flushed_t = 0.0
        deliveries = Deliveries(
            notifiers=notifiers,
            contacts_of=self.contacts_of,
            profiles=profiles,
            update=self._update,
            broadcast=self._broadcast,
            metrics=metrics,
            clock=clock,
        )
        self.escalation = Escalation(
            policy=self.policy,
            policy_for=self._policy_for,
            reclaim_idle_s=config.work_reclaim_idle_s,
            hub_id=hub_id,
            store=store,
            update=self._update,
            broadcast=self._broadcast,
            deliveries=deliveries,
            metrics=metrics,
            clock=clock,
        )

    # ------------------------------------------------------------------ lifecycle

    async def load(self) -> None:
        """Mirror the stored open incidents (at start, and after a reconnect)."""
        self._open, self._keys = {}, {}
        for incident in await self.store.open_incidents():
            self._mirror(incident)

    async def start(self) -> None:
        self._loop_task = self.spawn("doorstep-escalation", self._escalation_loop)

    async def refresh(self, incident_id: str) -> None:
        """Another hub changed this incident: mirror what is stored."""
        incident = await self.store.get_incident(incident_id)
        if incident is not None:
            self._mirror(incident)
            self._wakeup.set()

    def _mirror(self, incident: Incident) -> None:
        if core.is_open(incident):
            self._open[incident.id] = incident
            self._keys[incident.id] = reporter_key(
                incident.reporter.role, incident.reporter.sub, incident.client_id
            )
        else:
            self._open.pop(incident.id, None)
            self._keys.pop(incident.id, None)
            self._trail.pop(incident.id, None)

    async def close(self) -> None:
        await stop_tasks([self._loop_task])
        await self.escalation.close()
        with contextlib.suppress(Exception):
            await self._flush_trails()
        await self.notifiers.aclose()

    def open_incidents(self) -> list[Incident]:
        return sorted(self._open.values(), key=lambda i: (i.created_t, i.id))

    async def get(self, incident_id: str) -> Incident | None:
        """The stored incident: the truth, which another hub may have changed a moment ago."""
        return await self.store.get_incident(incident_id)

    # ------------------------------------------------------------------ raising

    async def raise_sos(self, principal: Principal, sos: wire.Sos) -> tuple[Incident, bool]:
        """Store the SOS durably (or raise); returns the incident and whether it is new."""
        if principal.role not in (Role.TECHNICIAN, Role.CUSTOMER):
            raise ProtocolError(ErrorCode.FORBIDDEN, "only technicians and customers raise SOS")
        self._check_sos(sos)
        key = reporter_key(principal.role.value, principal.sub, sos.id)
        # A store that blinked (a stale connection after a Redis restart, a failover) gets
        # a few quick tries here before the reporter is told to retry: every step is
        # idempotent (the reporter key makes a write whose reply was lost come back as the
        # stored incident), and a person pressing SOS should not wait for a round trip.
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_store_blinked),
            stop=tenacity.stop_after_attempt(SOS_STORE_ATTEMPTS),
            wait=tenacity.wait_exponential(multiplier=SOS_STORE_RETRY_S, max=0.5),
            reraise=True,
        )
        return await retrying(self._raise_sos_once, principal, sos, key)

    async def _raise_sos_once(
        self, principal: Principal, sos: wire.Sos, key: str
    ) -> tuple[Incident, bool]:
        stored = await self._raised_before(key)
        if stored is not None:
            return stored, False
        incident = core.raise_incident(
            incident_id=f"inc-{uuid.uuid4().hex[:16]}",
            client_id=sos.id,
            kind="sos",
            reporter=Reporter(sub=principal.sub, role=principal.role.value),
            t=self.clock(),
            note=sos.note,
            **await self._context(principal, sos),
        )
        return await self._store_new(incident, key)

    def _check_sos(self, sos: wire.Sos) -> None:
        if (sos.lat is None) != (sos.lon is None):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "sos needs both lat and lon, or neither")
        if sos.lat is not None and sos.lon is not None:
            check_coordinates(sos.lat, sos.lon)
        if sos.t > self.clock() + self.config.max_future_skew_s:
            raise ProtocolError(ErrorCode.TIMESTAMP_IN_FUTURE, f"sos t {sos.t} is in the future")

    async def raise_system(
        self, *, kind: str, technician_id: str, booking_id: str, client_id: str, note: str
    ) -> tuple[Incident, bool]:
        """An incident the hub raises itself about a technician (an unanswered check).

        The same durable path as an SOS: stored before operators hear of it, escalated the
        same way. The reporter is ``system:<technician>`` and ``client_id`` (the check id)
        makes it idempotent: raising it again returns the stored one, new or closed.
        """
        key = reporter_key(SYSTEM_ROLE, technician_id, client_id)
        stored = await self._raised_before(key)
        if stored is not None:
            return stored, False
        booking = await self.bookings.get_booking(booking_id)
        address = _address(booking)
        incident = core.raise_incident(
            incident_id=f"inc-{uuid.uuid4().hex[:16]}",
            client_id=client_id,
            kind=kind,
            reporter=Reporter(sub=technician_id, role=SYSTEM_ROLE),
            t=self.clock(),
            note=note,
            booking_id=booking_id,
            technician_id=technician_id,
            customer_id=booking.customer_id if booking else None,
            address=address,
            location=self._last_fix(technician_id) or address,
            city=self._city_of(booking, technician_id),
        )
        return await self._store_new(incident, key)

    async def _raised_before(self, key: str) -> Incident | None:
        """The incident already raised under this reporter key, open or closed."""
        open_id = next((i for i, k in self._keys.items() if k == key), None)
        if open_id is not None:
            return self._open[open_id]
        stored = await self.store.incident_by_reporter_key(key)
        if stored is not None:
            await self._adopt(stored)
        return stored

    async def _adopt(self, stored: Incident) -> None:
        """Take up an open incident found in the store that this hub does not mirror.

        A write whose reply was lost (the store blinked after writing) leaves an incident
        nobody was told of: neither these operators nor the other hubs, and no hub escalates
        what it does not mirror. Telling everyone now repeats nothing harmful when another
        hub raised it a moment ago (consoles key incidents by id).
        """
        if not core.is_open(stored) or stored.id in self._open:
            return
        self._mirror(stored)
        await self._broadcast(stored, "raised")
        await self.announce(Entity.INCIDENT, stored.id)
        self._wakeup.set()

    async def _store_new(self, incident: Incident, key: str) -> tuple[Incident, bool]:
        """Write a new incident durably, then tell everyone; returns (incident, is new).

        The store's unique reporter key decides a race between two raises of one SOS (two
        hubs, or a retry arriving while the first is being written): the loser returns the
        winner's incident, so a retried SOS is one incident whatever hub it reaches.
        """
        try:
            await self.store.save_incident(incident, key, list(incident.audit))
        except DuplicateReporterKey:
            stored = await self.store.incident_by_reporter_key(key)
            if stored is None:
                raise
            await self._adopt(stored)
            return stored, False
        self._mirror(incident)
        self.metrics.incidents.labels(kind=incident.kind).inc()
        await self._broadcast(incident, "raised")
        await self.announce(Entity.INCIDENT, incident.id)
        self._wakeup.set()
        return incident, True

    async def _context(self, principal: Principal, sos: wire.Sos) -> dict[str, Any]:
        """Booking, people, address and best location for a new incident."""
        booking = None
        if principal.role is Role.CUSTOMER and principal.booking:
            booking = await self.bookings.get_booking(principal.booking)
            if booking is not None:
                self._check_customer_booking(booking)
        elif principal.role is Role.TECHNICIAN:
            # The visit in progress, or none: an assigned next booking is not where the
            # technician is (its customer and address would send help to the wrong door).
            booking = self.bookings.current_visit(principal.sub)
        technician_id = principal.sub if principal.role is Role.TECHNICIAN else None
        if booking is not None and technician_id is None:
            technician_id = booking.technician_id
        address = _address(booking)
        location: IncidentLocation | None
        if sos.lat is not None and sos.lon is not None:
            location = IncidentLocation(
                lat=sos.lat, lon=sos.lon, t=sos.t, source="sos", acc=sos.acc
            )
        elif principal.role is Role.TECHNICIAN:
            location = self._last_fix(principal.sub) or address
        else:
            location = address
        return {
            "booking_id": booking.id if booking else None,
            "city": self._city_of(booking, technician_id),
            "technician_id": technician_id,
            "customer_id": principal.sub
            if principal.role is Role.CUSTOMER
            else (booking.customer_id if booking else None),
            "address": address,
            "location": location,
        }

    def _city_of(self, booking: Booking | None, technician_id: str | None) -> str:
        """The city whose escalation timers the incident follows: its booking's, else the
        technician's (a technician's SOS between visits)."""
        if booking is not None:
            return self.cities.of(booking.city).id
        profile = self.profiles.get(technician_id) if technician_id else None
        return self.cities.of(profile.city if profile else None).id

    def audience(self, incident: Incident) -> str | None:
        """The operator group that watches the incident's city (None: every operator)."""
        return self.cities.of(incident.city).operator_group

    def visible_to(self, principal: Principal, incident: Incident) -> bool:
        return principal.role is not Role.OPERATOR or principal.watches(self.audience(incident))

    def _policy_for(self, incident: Incident) -> EscalationPolicy:
        """The escalation timers of the incident's city (the hub's settings by default)."""
        t1, t2 = self.cities.of(incident.city).escalation.timers(
            self.config.escalation_t1_s, self.config.escalation_t2_s
        )
        policy = self._policies.get((t1, t2))
        if policy is None:
            policy = self._policies[(t1, t2)] = EscalationPolicy.from_timers(t1_s=t1, t2_s=t2)
        return policy

    def _check_customer_booking(self, booking: Booking) -> None:
        """A customer raises SOS on their booking while it is open and for
        ``customer_sos_grace_s`` after it ended; BookingClosed after that."""
        grace_s = self.config.customer_sos_grace_s
        ended_s = booking.ended_for_customer(self.clock(), grace_s)
        if ended_s is not None:
            raise BookingClosed(
                f"booking {booking.id} was {booking.status.value} {ended_s:.0f} s ago (SOS is"
                f" accepted for {grace_s:g} s after a booking ends); call emergency services"
            )

    def _last_fix(self, technician_id: str) -> IncidentLocation | None:
        last = self.fleet.last_position(technician_id)
        if last is None:
            return None
        return IncidentLocation(
            lat=last.lat, lon=last.lon, t=last.t, source="last_fix", acc=last.acc
        )

    # ------------------------------------------------------------------ acting

    async def act(
        self,
        principal: Principal,
        incident_id: str,
        action: IncidentAction,
        *,
        note: str | None = None,
        outcome: Outcome | None = None,
    ) -> Incident:
        """ack/resolve (operators) or cancel (the reporter); raises IllegalIncidentTransition."""
        answered: list[Incident] = []  # set when this action is the first operator answer

        def change(incident: Incident) -> Incident:
            if not self.visible_to(principal, incident):
                # Another group's city: not theirs to act on, and not theirs to know of.
                raise IncidentNotFound(f"incident {incident_id} does not exist")
            if incident.status is IncidentStatus.OPEN and action in ANSWERS:
                answered.append(incident)
            return core.apply(
                incident,
                action,
                t=self.clock(),
                actor=principal.actor,
                note=note,
                outcome=outcome,
                cancel_grace_s=self.config.sos_cancel_grace_s,
            )

        updated = await self._update(incident_id, change)
        if updated is None:
            raise IncidentNotFound(f"incident {incident_id} does not exist")
        if answered:
            # Read under the incident's lock: of two operators acking at once, only the
            # first finds it open, so each incident is timed once.
            waited = max(0.0, updated.updated_t - updated.created_t)
            self.metrics.time_to_ack.labels(kind=updated.kind).observe(waited)
        await self._broadcast(updated, action.value)
        return updated

    async def cancel_by_client_id(self, principal: Principal, client_id: str) -> Incident:
        key = reporter_key(principal.role.value, principal.sub, client_id)
        incident_id = next((i for i, k in self._keys.items() if k == key), None)
        if incident_id is None:
            stored = await self.store.incident_by_reporter_key(key)
            if stored is None:
                raise IncidentNotFound(f"no SOS with id {client_id} from you")
            incident_id = stored.id
        return await self.act(principal, incident_id, IncidentAction.CANCEL)

    async def _update(
        self, incident_id: str, change: Callable[[Incident], Incident]
    ) -> Incident | None:
        """Apply ``change`` to the stored incident under its lock, store it, tell the hubs.

        ``change`` may raise (an illegal transition): nothing is written then. None when the
        incident does not exist.
        """
        async with self.store.lock(f"incident:{incident_id}", LOCK_TTL_S):
            before = await self.store.get_incident(incident_id)
            if before is None:
                return None
            after = change(before)
            if after is not before:
                key = reporter_key(before.reporter.role, before.reporter.sub, before.client_id)
                audit = list(after.audit[len(before.audit) :])
                await self.store.save_incident(after, key, audit)
            self._mirror(after)
        if after is not before:
            await self.announce(Entity.INCIDENT, incident_id)
        return after

    # ------------------------------------------------------------------ live location

    async def on_fixes(self, accepted: AcceptedFixes) -> None:
        """Stream the technician's fixes to operators for every open incident about them."""
        technician_id, fixes = accepted.technician_id, accepted.fixes
        for incident_id, incident in list(self._open.items()):
            if incident.technician_id != technician_id:
                continue
            for fix in fixes:
                point = msgspec.convert(fix, TrailPoint, from_attributes=True)
                self._trail.setdefault(incident_id, []).append(point)
                message = wire.IncidentLocationMessage(
                    incident=incident_id, t=fix.t, lat=fix.lat, lon=fix.lon, acc=fix.acc
                )
                await self.bus.publish(
                    OPS_CHANNEL,
                    BusMessage(
                        kind="incident_location",
                        text=wire.encode(message),
                        urgent=True,
                        audience=self.audience(incident),
                    ),
                )

    async def _flush_trails(self) -> None:
        """Write the trail points gathered since the last flush onto their incidents."""
        pending, self._trail = self._trail, {}
        for incident_id, points in pending.items():

            def add(incident: Incident, points: list[TrailPoint] = points) -> Incident:
                if not core.is_open(incident):
                    return incident  # closed meanwhile: its trail is over
                for point in points:
                    incident = core.add_trail_point(incident, point)
                return incident

            try:
                await self._update(incident_id, add)
            except Exception:
                # Put them back (before any gathered since) for the next flush.
                self._trail[incident_id] = points + self._trail.get(incident_id, [])
                raise

    # ------------------------------------------------------------------ telling people

    async def _broadcast(self, incident: Incident, reason: str) -> None:
        message = wire.IncidentMessage(incident=msgspec.to_builtins(incident), reason=reason)
        await self.bus.publish(
            OPS_CHANNEL,
            BusMessage(
                kind="incident",
                text=wire.encode(message),
                urgent=True,
                audience=self.audience(incident),
            ),
        )
        status = wire.SosStatus(
            id=incident.client_id,
            incident=incident.id,
            status=incident.status.value,
            t=incident.updated_t,
            outcome=incident.outcome.value if incident.outcome else None,
        )
        await self.bus.publish(
            reporter_channel(incident.reporter.role, incident.reporter.sub),
            BusMessage(kind="sos_status", text=wire.encode(status), urgent=True),
        )

    # ------------------------------------------------------------------ escalation

    async def _escalation_loop(self) -> None:
        while True:
            try:
                await self.escalation.tick(self._open.values())
                now = self.clock()
                if self._trail and now - self._flushed_t >= TRAIL_FLUSH_S:
                    self._flushed_t = now
                    await self._flush_trails()
            except Exception:
                # A failing store must not end escalation for good: retry on the next tick.
                log.exception("escalation tick failed")
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WORK_POLL_S):
                    await self._wakeup.wait()

    # ------------------------------------------------------------------ contacts

    async def contacts_of(self, role: str, sub: str) -> list[EmergencyContact]:
        raw = await self.store.get_document(CONTACTS, contacts_key(role, sub))
        if raw is None:
            return []
        return msgspec.json.decode(raw, type=list[EmergencyContact])

    async def put_contacts(self, role: str, sub: str, contacts: list[EmergencyContact]) -> None:
        await self.store.put_document(
            CONTACTS, contacts_key(role, sub), msgspec.json.encode(contacts)
        )


__all__ = ["IncidentNotFound", "IncidentStatus", "SafetyDesk"]
