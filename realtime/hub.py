"""The hub's shared state and its rules for who sees what.

Thin I/O around the pure cores: bookings go through ``realtime.booking``, fixes through
``realtime.ingest``; this module keeps the in-memory indexes (active bookings, technicians'
seqs and last positions, who is online), writes through the store and publishes on the bus.
Endpoints (``realtime/ws.py``, ``realtime/http_api.py``) call it; it never touches a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from geofence.model import Fix
from realtime import booking as core
from realtime import protocol as wire
from realtime.alerting import AlertDesk
from realtime.arrivals import Arrivals
from realtime.backends.base import Bus, BusMessage, Store, StoredFix, Unsubscribe
from realtime.backends.roster import MemoryRoster, Roster, RosterEntry
from realtime.booking import Booking, BookingEvent
from realtime.channels import FLEET_CHANNEL, booking_channel, technician_channel
from realtime.cluster import LOCK_TTL_S, Cluster, Entity
from realtime.dispatch import Candidate, Ranked, rank
from realtime.history import HistoryWriter
from realtime.ingest import FixLimits, SeqTracker
from realtime.metrics import Metrics
from realtime.readiness import BackendHealth
from realtime.safety import SafetyDesk
from realtime.settings import Settings
from realtime.sockets.fanout import Outbox
from realtime.tasks import Supervisor, stop_tasks
from realtime.watchdog import Watchdog
from realtime.zoning import Zoning

log = logging.getLogger("doorstep.hub")

Clock = Callable[[], float]

# A hub holds a lease on each technician connected to it, renewed every PRESENCE_REFRESH_S;
# a hub that dies (kill -9) stops renewing and its technicians show offline after the lease.
PRESENCE_LEASE_S = 15.0
PRESENCE_REFRESH_S = 5.0
# Dispatch considers the technicians whose last position is this close (Redis GEOSEARCH).
DISPATCH_RADIUS_M = 100_000.0
DISPATCH_LIMIT = 500


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


class TechnicianBusy(Exception):
    """The technician is on another visit: a second ``en_route`` waits for its check-out."""


class _Relock(Exception):
    """The booking's technician changed before its lock was taken: take the right one."""

    def __init__(self, technician_id: str) -> None:
        super().__init__(technician_id)
        self.technician_id = technician_id


def _technician_decided(
    booking: Booking | None, event: BookingEvent, technician_id: str | None
) -> str | None:
    """The technician whose lock this transition needs: the one it assigns, or the one
    whose visit it starts; None when it decides nothing about a technician."""
    if booking is None:
        return None
    if event is BookingEvent.ASSIGN:
        return technician_id
    if core.starts_visit(booking, event):
        return booking.technician_id
    return None


def technician_lock(technician_id: str) -> str:
    """The store lock serialising what decides a technician's bookings (assigning them,
    starting a visit) among every hub. Taken before a booking's lock, never after."""
    return f"technician:{technician_id}"


@dataclass
class TechnicianState:
    seq: SeqTracker
    durable_seq: int
    connections: int = 0
    last: wire.Location | None = None
    # Hub time of the last accepted fix: "is the phone still sending?" without trusting the
    # phone's clock (the visit watchdog's signal-lost timer).
    heard_t: float | None = None


PROFILES = "technicians"


class TechnicianProfile(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the platform tells the hub about a technician (for dispatch)."""

    skills: tuple[str, ...] = ()
    name: str | None = None


_profile_decoder = msgspec.json.Decoder(TechnicianProfile)


class NoCandidate(Exception):
    """Dispatch found nobody online, free and skilled for the booking."""


@dataclass
class BookingSpec:
    """A validated ``POST /v1/bookings`` body."""

    customer_id: str
    destination: core.Destination
    id: str | None = None
    technician_id: str | None = None
    expected_duration_s: float = core.DEFAULT_EXPECTED_DURATION_S
    geofence_radius_m: float = core.DEFAULT_GEOFENCE_RADIUS_M
    skills: tuple[str, ...] = field(default_factory=tuple)
    fence: dict[str, object] | None = None


def public_booking(booking: Booking) -> dict[str, object]:
    return msgspec.to_builtins(booking)


class Hub:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        bus: Bus,
        metrics: Metrics,
        clock: Clock = time.time,
        roster: Roster | None = None,
        tasks: Supervisor | None = None,
    ) -> None:
        self.settings = settings
        # Every background task runs under this supervisor (restarted when it raises).
        self.tasks = tasks if tasks is not None else Supervisor()
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.clock = clock
        self.roster: Roster = roster if roster is not None else MemoryRoster()
        # Technicians online on other hubs, as of the last look at the roster.
        self._elsewhere: set[str] = set()
        self._presence_t = float("-inf")
        self._roster_tasks: set[asyncio.Task[None]] = set()
        self.hub_id = settings.hub_id or (
            f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self.limits = FixLimits(
            max_future_skew_s=settings.max_future_skew_s,
            max_fix_age_s=settings.max_fix_age_s,
            max_batch_points=settings.max_batch_points,
        )
        self.history = HistoryWriter(
            store,
            interval=settings.history_flush_interval_s,
            max_batch=settings.history_flush_max,
            pending_limit=settings.history_pending_limit,
            on_durable=self._on_durable,
            metrics=metrics,
            tasks=self.tasks,
        )
        self._active: dict[str, Booking] = {}
        self._bookings_of: defaultdict[str, set[str]] = defaultdict(set)
        self._technicians: dict[str, TechnicianState] = {}
        self._fleet_dirty: set[str] = set()
        self._fleet_task: asyncio.Task[None] | None = None
        self.arrivals = Arrivals(self)
        self.zoning = Zoning(self)
        self.safety = SafetyDesk(self)
        self.alerts = AlertDesk(self)
        self.watchdog = Watchdog(self)
        self._profiles: dict[str, TechnicianProfile] = {}
        self.cluster = Cluster(
            self.hub_id,
            bus,
            {
                Entity.BOOKING: self._refresh_booking,
                Entity.INCIDENT: self.safety.refresh,
                Entity.ALERT: self.alerts.refresh,
                Entity.ZONES: lambda _: self.zoning.load(),
                Entity.PROFILE: self._refresh_profile,
                Entity.POSITION_ERASED: self._forget_erased_position,
            },
            tasks=self.tasks,
        )
        self.backend = BackendHealth(store, bus, self.tasks)
        self.ready = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.store.open()
        await self.bus.connect()
        await self.roster.open()
        await self.arrivals.load()
        # Subscribed before the mirrors are read: a change made meanwhile by another hub is
        # applied after the read, never lost between the two.
        self.cluster.start()
        await self.bus.wait_synced()
        self.bus.on_resync(self.resync)
        await self._load_mirrors()
        await self.safety.start()
        await self.watchdog.load()  # after the bookings: it watches the visits among them
        self.history.start()
        self._fleet_task = self.tasks.spawn("doorstep-fleet", self._fleet_loop)
        self.backend.start()
        self.ready = True

    async def _load_mirrors(self) -> None:
        """Read from the store everything this hub serves from memory."""
        await self.zoning.load()
        await self.alerts.load()
        await self.safety.load()
        self._profiles = {
            key: _profile_decoder.decode(raw)
            for key, raw in (await self.store.list_documents(PROFILES)).items()
        }
        active = await self.store.active_bookings()
        for stale in set(self._active) - {booking.id for booking in active}:
            booking = await self.store.get_booking(stale)
            if booking is not None:
                self._index(booking)
        for booking in active:
            self._index(booking)
            if booking.technician_id:
                await self._load_technician(booking.technician_id)

    async def resync(self) -> None:
        """After the bus reconnected: notices from other hubs may be lost, read it all again."""
        log.info("hub %s: re-reading its mirrors after a reconnect", self.hub_id)
        await self._load_mirrors()

    async def _refresh_booking(self, booking_id: str) -> None:
        booking = await self.store.get_booking(booking_id)
        if booking is None:
            return
        if booking.active and booking.technician_id:
            await self._load_technician(booking.technician_id)
        self._index(booking)

    async def _refresh_profile(self, technician_id: str) -> None:
        raw = await self.store.get_document(PROFILES, technician_id)
        if raw is None:
            self._profiles.pop(technician_id, None)
        else:
            self._profiles[technician_id] = _profile_decoder.decode(raw)

    async def stop(self) -> None:
        self.ready = False
        await self.backend.stop()
        await self.cluster.stop()
        await stop_tasks([self._fleet_task])
        await self.watchdog.close()
        await self.arrivals.close()
        await self.safety.close()
        await self.history.stop()
        await asyncio.gather(*self._roster_tasks, return_exceptions=True)
        await self.bus.disconnect()
        await self.roster.close()
        await self.store.close()

    @property
    def healthy(self) -> bool:
        return self.ready and self.history.healthy and self.backend.ok

    # ------------------------------------------------------------------ bookings

    def _index(self, booking: Booking) -> None:
        old = self._active.pop(booking.id, None)
        if old is not None and old.technician_id:
            self._bookings_of[old.technician_id].discard(booking.id)
        if booking.active:
            self._active[booking.id] = booking
            if booking.technician_id:
                self._bookings_of[booking.technician_id].add(booking.id)
        self.arrivals.booking_changed(booking)

    async def get_booking(self, booking_id: str) -> Booking | None:
        cached = self._active.get(booking_id)
        return cached if cached is not None else await self.store.get_booking(booking_id)

    async def booking_events(self, booking_id: str) -> list[core.AuditEvent]:
        return await self.store.booking_events(booking_id)

    def active_bookings_of(self, technician_id: str) -> list[Booking]:
        """Every open booking of the technician (assigned ones too), by id."""
        return [self._active[b] for b in sorted(self._bookings_of.get(technician_id, ()))]

    def current_visit(self, technician_id: str) -> Booking | None:
        """The technician's visit in progress (``en_route`` .. ``in_service``), or None.

        The one booking whose customer sees the technician's position and ETA, and the one
        a technician's SOS is about. From this hub's mirror (kept by the cluster notices).
        """
        return core.current_visit(self.active_bookings_of(technician_id))

    def shows_technician(self, booking: Booking) -> bool:
        """Whether the booking's watchers see its technician's position and ETA now."""
        if not booking.in_visit or booking.technician_id is None:
            return False
        current = self.current_visit(booking.technician_id)
        # None: this hub's mirror has not caught up with the booking yet (read from the store).
        return current is None or current.id == booking.id

    def active_bookings(self) -> list[Booking]:
        return [self._active[b] for b in sorted(self._active)]

    async def create_booking(self, spec: BookingSpec, actor: str) -> Booking:
        booking_id = spec.id or uuid.uuid4().hex
        async with contextlib.AsyncExitStack() as locks:
            if spec.technician_id:
                # An assignment: serialised with dispatch's "is this technician free?".
                await locks.enter_async_context(
                    self.store.lock(technician_lock(spec.technician_id), LOCK_TTL_S)
                )
            await locks.enter_async_context(self.store.lock(f"booking:{booking_id}", LOCK_TTL_S))
            if booking_id in self._active or await self.store.get_booking(booking_id):
                raise Conflict(f"booking {booking_id} already exists")
            booking, events = core.create(
                booking_id=booking_id,
                customer_id=spec.customer_id,
                destination=spec.destination,
                t=self.clock(),
                actor=actor,
                technician_id=spec.technician_id,
                expected_duration_s=spec.expected_duration_s,
                geofence_radius_m=spec.geofence_radius_m,
                skills=spec.skills,
                fence=spec.fence,
            )
            if booking.technician_id:
                await self._load_technician(booking.technician_id)
            await self.store.save_booking(booking, events)
            self._index(booking)
            if booking.technician_id:
                await self._publish_booking(booking)
        await self.cluster.announce(Entity.BOOKING, booking.id)
        return booking

    async def transition(
        self,
        booking_id: str,
        event: BookingEvent,
        actor: str,
        *,
        cause: str | None = None,
        technician_id: str | None = None,
        t: float | None = None,
    ) -> Booking:
        """Apply one lifecycle event durably, then tell the watchers and the technician.

        ``t`` is when it happened, if not now: check-in and check-out report the time the
        technician really arrived or left, which is earlier than when the hub became sure.

        An assignment, and the start of a visit (``en_route``), also hold the technician's
        lock: a technician is on at most one visit (TechnicianBusy otherwise), and dispatch
        checks "free" under the same lock.
        """
        peek = await self.get_booking(booking_id)
        locked = _technician_decided(peek, event, technician_id)
        for _ in range(3):
            try:
                async with contextlib.AsyncExitStack() as stack:
                    if locked is not None:
                        await stack.enter_async_context(
                            self.store.lock(technician_lock(locked), LOCK_TTL_S)
                        )
                    new = await self._transition_locked(
                        booking_id,
                        event,
                        actor,
                        cause=cause,
                        technician_id=technician_id,
                        t=t,
                        locked_technician=locked,
                    )
                break
            except _Relock as relock:
                # The stored booking differs from the peek (re-assigned, or this hub's
                # mirror was behind): take the lock of the technician it really concerns.
                locked = relock.technician_id
        else:
            raise Conflict(f"booking {booking_id} keeps changing technician; retry")
        await self.cluster.announce(Entity.BOOKING, new.id)
        return new

    async def _transition_locked(
        self,
        booking_id: str,
        event: BookingEvent,
        actor: str,
        *,
        cause: str | None,
        technician_id: str | None,
        t: float | None,
        locked_technician: str | None = None,
    ) -> Booking:
        """``transition`` under the booking's lock (the caller holds the technician's lock
        when ``locked_technician`` is set); the cluster notice is the caller's."""
        # Read-modify-write under the booking's lock, reading the store (another hub may have
        # changed it since this hub's mirror saw it).
        async with self.store.lock(f"booking:{booking_id}", LOCK_TTL_S):
            old = await self.store.get_booking(booking_id)
            if old is None:
                raise NotFound(f"booking {booking_id} does not exist")
            needed = _technician_decided(old, event, technician_id)
            if needed is not None and needed != locked_technician:
                raise _Relock(needed)
            if needed is not None and core.starts_visit(old, event):
                # The store, not this hub's mirror: another hub may have started a visit of
                # this technician a moment ago (it held the same lock, so it is stored).
                busy = core.other_visit(await self.store.active_bookings(), needed, old.id)
                if busy is not None:
                    raise TechnicianBusy(
                        f"technician {needed} is on visit {busy.id} ({busy.status.value}):"
                        " it must be checked out or cancelled before another starts"
                    )
            new, record = core.apply(
                old,
                event,
                t=self.clock() if t is None else t,
                actor=actor,
                cause=cause,
                technician_id=technician_id,
            )
            if new.active and new.technician_id:
                # Its last known position is in the snapshot from the moment it is assigned.
                await self._load_technician(new.technician_id)
            await self.store.save_booking(new, [record])
            self._index(new)
            status = wire.Status(
                booking_id=new.id, status=new.status.value, t=record.t, cause=cause
            )
            await self.bus.publish(
                booking_channel(new.id),
                BusMessage(kind="status", text=wire.encode(status), final=new.final),
            )
            await self._publish_booking(new)
            if old.technician_id and old.technician_id != new.technician_id:
                await self._publish_booking(new, to=old.technician_id)
        return new

    async def _publish_booking(self, booking: Booking, to: str | None = None) -> None:
        technician = to or booking.technician_id
        if technician:
            text = wire.encode(wire.BookingMessage(booking=public_booking(booking)))
            await self.bus.publish(
                technician_channel(technician), BusMessage(kind="booking", text=text)
            )

    # ------------------------------------------------------------------ technicians

    async def _load_technician(self, technician_id: str) -> TechnicianState:
        """The technician's state; on first use read from the store (resume seq, last fix)."""
        state = self._technicians.get(technician_id)
        if state is None:
            highest = await self.store.highest_seq(technician_id)
            stored = await self.store.last_fix(technician_id)
            # Another task (a second connection, an assignment) may have loaded it meanwhile.
            state = self._technicians.get(technician_id)
            if state is None:
                last = _stored_location(stored) if stored is not None else None
                heard_t = stored.received_t if stored is not None else None
                state = TechnicianState(
                    seq=SeqTracker(highest), durable_seq=highest, last=last, heard_t=heard_t
                )
                self._technicians[technician_id] = state
        return state

    async def technician_connected(self, technician_id: str) -> TechnicianState:
        state = await self._load_technician(technician_id)
        if state.connections == 0:
            await self._catch_up(technician_id, state)
        state.connections += 1
        self._fleet_dirty.add(technician_id)
        # Taken whoever held it: this is the technician's newest connection.
        await self._safely(
            self.roster.set_online(self.hub_id, [technician_id], self.clock() + PRESENCE_LEASE_S)
        )
        return state

    async def _catch_up(self, technician_id: str, state: TechnicianState) -> None:
        """Take in what other hubs stored while the technician was connected to them.

        With several hubs a technician moves between them (a reconnect through the load
        balancer, a hub killed): the seqs and the last fix another hub stored meanwhile are
        newer than this hub's memory, and resuming from stale ones would accept duplicates.
        The store is the truth; local state only wins for fixes not yet flushed to it.
        """
        highest = await self.store.highest_seq(technician_id)
        stored = await self.store.last_fix(technician_id)
        state.seq.highest = max(state.seq.highest, highest)
        state.durable_seq = max(state.durable_seq, highest)
        if stored is not None and (state.last is None or stored.t > state.last.t):
            state.last = _stored_location(stored)
            state.heard_t = max(state.heard_t or 0.0, stored.received_t)

    def technician_disconnected(self, technician_id: str) -> None:
        state = self._technicians.get(technician_id)
        if state is not None:
            state.connections -= 1
            self._fleet_dirty.add(technician_id)
            if state.connections == 0:
                # A reconnecting client resends from its first ack: the hole is not needed.
                state.seq.forget_hole()
                # Only if this hub still holds the lease: they may be on another hub already.
                task = asyncio.create_task(
                    self._safely(self.roster.set_offline(self.hub_id, technician_id))
                )
                self._roster_tasks.add(task)
                task.add_done_callback(self._roster_tasks.discard)

    async def ingest(
        self, technician_id: str, message: wire.Location | wire.Batch, received: float
    ) -> None:
        """Validate, queue for the history, publish the newest position; or raise ProtocolError.

        ``received`` is ``time.perf_counter()`` when the frame arrived (latency metric).
        """
        state = self._technicians[technician_id]
        now = self.clock()
        # A full history queue refuses the frame ``server_busy`` naming its first fresh seq,
        # and the tracker then holds every later seq back until that one is resent: no ack
        # can cover a fix that was refused for now (docs/protocol.md, "Acks").
        room = self.history.pending_limit - self.history.pending
        fixes = state.seq.accept(message, now, self.limits, room=room)
        if not fixes:
            # A batch made only of already-stored points: re-ack so the client trims its buffer.
            await self._send_ack(technician_id, state.durable_seq)
            return
        self.metrics.fixes_accepted.inc(len(fixes))
        state.heard_t = now
        self.history.submit(
            [
                StoredFix(technician_id, f.seq, f.t, f.lat, f.lon, f.acc, f.speed, f.heading, now)
                for f in fixes
            ]
        )
        newest = fixes[-1]
        previous_t = state.last.t if state.last is not None else float("-inf")
        if newest.t >= previous_t:
            state.last = newest
            self._fleet_dirty.add(technician_id)
            await self._publish_position(technician_id, newest)
        self.metrics.ingest_publish_seconds.observe(time.perf_counter() - received)
        # Zone membership follows every fix (an offline batch may cross a boundary and back),
        # but never goes back in time.
        for fix in fixes:
            if fix.t >= previous_t:
                await self.zoning.on_fix(technician_id, fix.lat, fix.lon, fix.t)
        plain = [Fix(f.t, f.lat, f.lon, f.acc, f.speed, f.heading) for f in fixes]
        await self.safety.on_fixes(technician_id, plain)
        # Only the visit in progress: the next booking's ETA and arrival wait for its
        # en_route (its tracker starts then).
        visit = self.current_visit(technician_id)
        if visit is not None:
            await self.arrivals.on_fixes(technician_id, [visit.id], plain)

    async def _publish_position(self, technician_id: str, fix: wire.Location) -> None:
        position = _position(technician_id, fix)
        message = BusMessage(
            kind="position", text=wire.encode(position), conflate_key=f"position:{technician_id}"
        )
        # Only the technician's current visit: a customer never sees another booking's
        # technician, nor their own before en_route (the technician may be in the previous
        # customer's home) or after check-out.
        visit = self.current_visit(technician_id)
        if visit is not None:
            await self.bus.publish(booking_channel(visit.id), message)

    async def _on_durable(self, durable: dict[str, int]) -> None:
        for technician_id, seq in durable.items():
            state = self._technicians.get(technician_id)
            if state is not None and seq > state.durable_seq:
                state.durable_seq = seq
                await self._send_ack(technician_id, seq)

    async def _send_ack(self, technician_id: str, seq: int) -> None:
        text = wire.encode(wire.Ack(seq=seq))
        await self.bus.publish(
            technician_channel(technician_id), BusMessage(kind="ack", text=text, conflate_key="ack")
        )

    async def heard_t(self, technician_id: str) -> float | None:
        """Hub time of the technician's last accepted fix, on any hub; None when none.

        This hub's memory when the technician's socket is here; otherwise the store, where
        the hub they are connected to writes their fixes.
        """
        state = self._technicians.get(technician_id)
        local = state.heard_t if state is not None else None
        if state is not None and state.connections > 0:
            return local
        stored = await self.store.last_fix(technician_id)
        if stored is None:
            return local
        return max(local or 0.0, stored.received_t)

    def last_position(self, technician_id: str) -> wire.Position | None:
        state = self._technicians.get(technician_id)
        if state is None or state.last is None:
            return None
        return _position(technician_id, state.last)

    def forget_positions_before(self, cutoff: float) -> int:
        """Retention (realtime/retention.py): drop remembered last positions whose fix time is
        before ``cutoff``; the seqs stay (resume). Returns how many."""
        gone = 0
        for state in self._technicians.values():
            if state.last is not None and state.last.t < cutoff:
                state.last = None
                gone += 1
        return gone

    def forget_position(self, technician_id: str) -> None:
        """Erasure: this hub no longer remembers where the technician was."""
        state = self._technicians.get(technician_id)
        if state is not None:
            state.last = None

    async def erase_position(self, technician_id: str) -> None:
        """Erasure: forget the technician's last position here and on every other hub."""
        self.forget_position(technician_id)
        await self.cluster.announce(Entity.POSITION_ERASED, technician_id)

    async def _forget_erased_position(self, technician_id: str) -> None:
        self.forget_position(technician_id)

    # ------------------------------------------------------------------ profiles, dispatch

    def profile(self, technician_id: str) -> TechnicianProfile | None:
        return self._profiles.get(technician_id)

    async def put_profile(self, technician_id: str, profile: TechnicianProfile) -> None:
        await self.store.put_document(PROFILES, technician_id, msgspec.json.encode(profile))
        self._profiles[technician_id] = profile
        await self.cluster.announce(Entity.PROFILE, technician_id)

    def is_online(self, technician_id: str) -> bool:
        """Connected here, or on another hub as of the last ``look_around``."""
        state = self._technicians.get(technician_id)
        return (state is not None and state.connections > 0) or technician_id in self._elsewhere

    def _connected_here(self) -> list[str]:
        return sorted(t for t, state in self._technicians.items() if state.connections > 0)

    async def look_around(self, technician_ids: Iterable[str] = ()) -> None:
        """Update this hub's view of technicians on other hubs from the roster: who is online
        and, for them and ``technician_ids``, their last position (when newer than known).

        Awaited before a snapshot is built, so that the snapshot itself needs no await. A
        roster that cannot be reached leaves the view as it was (logged).
        """
        try:
            online = await self.roster.online(self.clock())
            self._elsewhere = {t for t, hub in online.items() if hub != self.hub_id}
            wanted = (self._elsewhere | set(technician_ids)) - set(self._connected_here())
            entries = await self.roster.positions(sorted(wanted))
        except Exception:
            log.warning("roster unavailable; showing this hub's own view", exc_info=True)
            return
        for technician_id, entry in entries.items():
            state = self._technicians.get(technician_id)
            if state is None:
                # Seqs come from the store when the technician connects here (_catch_up).
                state = TechnicianState(seq=SeqTracker(-1), durable_seq=-1)
                self._technicians[technician_id] = state
            if state.last is None or (entry.t, entry.seq) > (state.last.t, state.last.seq):
                state.last = _roster_location(entry)
                state.heard_t = max(state.heard_t or 0.0, entry.received_t)

    async def dispatch_ranking(self, booking: Booking) -> list[Ranked]:
        """Online technicians (on any hub) with no other active booking, the skills, a recent
        fix; found near the destination with the roster's GEO search."""
        destination = booking.destination
        try:
            near = await self.roster.near(
                destination.lat, destination.lon, DISPATCH_RADIUS_M, DISPATCH_LIMIT
            )
        except Exception:
            log.warning("roster unavailable; dispatching among this hub's own", exc_info=True)
            near = []
        await self.look_around([technician_id for technician_id, _ in near])
        considered = {technician_id for technician_id, _ in near} | set(self._connected_here())
        candidates = []
        for technician_id in sorted(considered):
            state = self._technicians.get(technician_id)
            busy = self._bookings_of.get(technician_id, set()) - {booking.id}
            if state is None or not self.is_online(technician_id) or busy or state.last is None:
                continue
            profile = self._profiles.get(technician_id) or TechnicianProfile()
            candidates.append(
                Candidate(
                    technician_id,
                    state.last.lat,
                    state.last.lon,
                    state.last.t,
                    frozenset(profile.skills),
                )
            )
        return rank(
            candidates,
            booking.destination.lat,
            booking.destination.lon,
            booking.skills,
            self.arrivals.provider,
            self.clock(),
        )

    async def dispatch(
        self, booking_id: str, actor: str, *, dry_run: bool
    ) -> tuple[list[Ranked], Booking]:
        """Rank candidates and, unless ``dry_run``, assign the best one."""
        booking = await self.get_booking(booking_id)
        if booking is None:
            raise NotFound(f"booking {booking_id} does not exist")
        if (booking.status, BookingEvent.ASSIGN) not in core.TRANSITIONS:
            raise core.IllegalTransition(booking.id, booking.status, BookingEvent.ASSIGN)
        ranking = await self.dispatch_ranking(booking)
        if dry_run:
            return ranking, booking
        if not ranking:
            raise NoCandidate(
                f"no online, free technician with skills {list(booking.skills)} "
                "and a recent position"
            )
        for place, best in enumerate(ranking, start=1):
            assigned = await self._assign_if_free(
                booking_id,
                best.technician_id,
                actor,
                cause=f"dispatch: ETA {best.eta_s:.0f} s, #{place} of {len(ranking)}",
            )
            if assigned is not None:
                await self.cluster.announce(Entity.BOOKING, assigned.id)
                return ranking, assigned
        raise NoCandidate(
            f"every technician ranked for booking {booking_id} was taken by another booking"
            " meanwhile"
        )

    async def _assign_if_free(
        self, booking_id: str, technician_id: str, actor: str, cause: str
    ) -> Booking | None:
        """Assign the technician if they still have no other open booking; else None.

        The ranking was made from this hub's mirror, a moment ago: a concurrent dispatch
        (here or on another hub) may have taken the technician since. Checked again under
        the technician's lock, reading the store, so two dispatches never both win one.
        """
        async with self.store.lock(technician_lock(technician_id), LOCK_TTL_S):
            # Under the lock: an assignment of this technician elsewhere is stored by now.
            taken = core.other_open(await self.store.active_bookings(), technician_id, booking_id)
            if taken:
                return None
            return await self._transition_locked(
                booking_id,
                BookingEvent.ASSIGN,
                actor,
                cause=cause,
                technician_id=technician_id,
                t=None,
                locked_technician=technician_id,
            )

    # ------------------------------------------------------------------ watchers

    def watch(self, channel: str, outbox: Outbox) -> Unsubscribe:
        """Route a channel into a connection's outbox; ``final`` messages close it after."""

        def deliver(message: BusMessage) -> None:
            outbox.put(
                message.kind, message.text, conflate_key=message.conflate_key, urgent=message.urgent
            )
            if message.final:
                outbox.close(wire.CloseCode.NORMAL, "booking is over", discard_pending=False)

        return self.bus.subscribe(channel, deliver)

    def booking_snapshot(self, booking: Booking) -> wire.Snapshot:
        """The booking, and while it is the technician's current visit, where they are."""
        position = eta = None
        if self.shows_technician(booking):
            assert booking.technician_id is not None
            position = self.last_position(booking.technician_id)
            eta = self.arrivals.eta_of(booking.id)
        return wire.Snapshot(booking=public_booking(booking), position=position, eta=eta)

    def fleet_entry(self, technician_id: str) -> wire.FleetEntry:
        state = self._technicians.get(technician_id)
        online = self.is_online(technician_id)
        fix = state.last if state is not None else None
        if fix is None:
            return wire.FleetEntry(technician_id=technician_id, online=online)
        return wire.FleetEntry(technician_id=technician_id, online=online, **_fix_fields(fix))

    def fleet_snapshot(self) -> list[wire.FleetEntry]:
        """Every online technician, on this hub or another (call ``look_around`` first)."""
        return [self.fleet_entry(tid) for tid in sorted(self._technicians) if self.is_online(tid)]

    async def _fleet_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.fleet_interval_s)
            await self._share_presence()
            if not self._fleet_dirty:
                continue
            dirty, self._fleet_dirty = sorted(self._fleet_dirty), set()
            if any(not self._technicians[t].connections for t in dirty):
                # A socket closed here: before saying "offline", see whether the technician
                # is already connected to another hub (moving hubs is not going offline).
                await self.look_around()
            fleet = wire.Fleet(positions=[self.fleet_entry(t) for t in dirty])
            await self.bus.publish(FLEET_CHANNEL, BusMessage(kind="fleet", text=wire.encode(fleet)))
            await self._safely(self.roster.record_positions(self._roster_entries(dirty)))

    async def _share_presence(self) -> None:
        """Renew this hub's leases on its technicians (not taking live leases of others)."""
        now = self.clock()
        if now - self._presence_t < PRESENCE_REFRESH_S:
            return
        self._presence_t = now
        connected = self._connected_here()
        if connected:
            await self._safely(
                self.roster.set_online(self.hub_id, connected, now + PRESENCE_LEASE_S, now=now)
            )

    def _roster_entries(self, technician_ids: list[str]) -> list[RosterEntry]:
        """The newest positions this hub received, for the roster."""
        entries = []
        for technician_id in technician_ids:
            state = self._technicians.get(technician_id)
            if state is None or state.last is None or state.heard_t is None:
                continue
            if state.connections <= 0 and technician_id in self._elsewhere:
                continue  # learned from the roster, not ours to write back
            fix = state.last
            entries.append(
                RosterEntry(
                    technician_id=technician_id,
                    seq=fix.seq,
                    t=fix.t,
                    lat=fix.lat,
                    lon=fix.lon,
                    received_t=state.heard_t,
                    acc=fix.acc,
                    speed=fix.speed,
                    heading=fix.heading,
                )
            )
        return entries

    async def _safely(self, operation: Awaitable[None]) -> None:
        """Roster writes are a shared view, not safety data: a failure is logged, not fatal
        (the next refresh repairs it)."""
        try:
            await operation
        except Exception:
            log.warning("roster update failed", exc_info=True)


def _roster_location(entry: RosterEntry) -> wire.Location:
    return wire.Location(
        seq=entry.seq,
        t=entry.t,
        lat=entry.lat,
        lon=entry.lon,
        acc=entry.acc,
        speed=entry.speed,
        heading=entry.heading,
    )


def _stored_location(stored: StoredFix) -> wire.Location:
    return wire.Location(
        seq=stored.seq,
        t=stored.t,
        lat=stored.lat,
        lon=stored.lon,
        acc=stored.acc,
        speed=stored.speed,
        heading=stored.heading,
    )


def _position(technician_id: str, fix: wire.Location) -> wire.Position:
    """The ``position`` message for a technician's fix."""
    return wire.Position(technician_id=technician_id, seq=fix.seq, **_fix_fields(fix))


def _fix_fields(fix: wire.Location) -> dict[str, float | None]:
    """What a fix shows to watchers (positions and fleet entries carry the same fields)."""
    return {
        "t": fix.t,
        "lat": fix.lat,
        "lon": fix.lon,
        "acc": fix.acc,
        "speed": fix.speed,
        "heading": fix.heading,
    }
