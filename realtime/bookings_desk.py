"""The one place that owns booking state: the active-booking mirror and every transition.

Thin I/O around the pure core ``realtime/booking.py``. Creating a booking, each lifecycle
event (platform calls, check-in and check-out from arrivals, dispatch's assignment) goes
through ``BookingDesk``: under the store's locks, read from the store, applied by the core,
written with its audit entry, then told to the watchers, the technician and the other hubs.
The rest of the hub reads bookings through it (``BookingView``, ``realtime/ports.py``) and
hears of changes through ``on_change`` listeners (arrivals starts and stops its trackers).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from realtime import booking as core
from realtime.aio import Afterwards
from realtime.backends.base import Store
from realtime.booking import Booking, BookingEvent
from realtime.cluster import LOCK_TTL_S, Entity
from realtime.fleet import Fleet
from realtime.metrics import Metrics
from realtime.ports import Announce, Clock
from realtime.publish import Publisher
from realtime.stats import decided_by_hand
from realtime.visit_ledger import VisitLedger

log = logging.getLogger("doorstep.bookings")


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


def on_time_label(booking: Booking) -> str:
    """A checked-in booking against its promised window: yes (by its end), no, or none."""
    if booking.window_end_t is None or booking.arrived_t is None:
        return "none"
    return "yes" if booking.arrived_t <= booking.window_end_t else "no"


def technician_lock(technician_id: str) -> str:
    """The store lock serialising what decides a technician's bookings (assigning them,
    starting a visit) among every hub. Taken before a booking's lock, never after."""
    return f"technician:{technician_id}"


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
    terms: core.BookingTerms | None = None


class BookingDesk:
    def __init__(
        self,
        *,
        store: Store,
        publisher: Publisher,
        announce: Announce,
        clock: Clock,
        fleet: Fleet,
        visits: VisitLedger | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        # Check-ins (automatic or by hand, on time or not) and bookings ended, counted as
        # they are stored; None in tests that build a desk alone.
        self.metrics = metrics
        # Each ended booking goes into its technician's ledger (dispatch's history score).
        self.visits = visits
        self.publisher = publisher
        self.announce = announce
        self.clock = clock
        # Assigning loads the technician: their last position is in the booking's snapshot.
        self.fleet = fleet
        self._active: dict[str, Booking] = {}
        self._bookings_of: defaultdict[str, set[str]] = defaultdict(set)
        self._listeners: list[Callable[[Booking], None]] = []
        self._after_check_in: list[Callable[[Booking], Awaitable[None]]] = []
        self.afterwards = Afterwards(log)

    def on_change(self, listener: Callable[[Booking], None]) -> None:
        """Call ``listener`` with every booking this hub learns a new version of."""
        self._listeners.append(listener)

    def after_check_in(self, hook: Callable[[Booking], Awaitable[None]]) -> None:
        """Await ``hook`` after each check-in this hub stores (its errors are logged)."""
        self._after_check_in.append(hook)

    # ------------------------------------------------------------------ the mirror

    async def load(self) -> None:
        """Read the active bookings from the store (at start, and after a reconnect)."""
        active = await self.store.active_bookings()
        for stale in set(self._active) - {booking.id for booking in active}:
            booking = await self.store.get_booking(stale)
            if booking is not None:
                self._index(booking)
        for booking in active:
            self._index(booking)
            if booking.technician_id:
                await self.fleet.load(booking.technician_id)

    async def refresh(self, booking_id: str) -> None:
        """Another hub changed this booking: mirror what is stored."""
        booking = await self.store.get_booking(booking_id)
        if booking is None:
            return
        if booking.active and booking.technician_id:
            await self.fleet.load(booking.technician_id)
        self._index(booking)

    def _index(self, booking: Booking) -> None:
        old = self._active.pop(booking.id, None)
        if old is not None and old.technician_id:
            self._bookings_of[old.technician_id].discard(booking.id)
        if booking.active:
            self._active[booking.id] = booking
            if booking.technician_id:
                self._bookings_of[booking.technician_id].add(booking.id)
        for listener in self._listeners:
            listener(booking)

    # ------------------------------------------------------------------ reading

    def cached(self, booking_id: str) -> Booking | None:
        """The booking if this hub mirrors it (an active one), without a store read."""
        return self._active.get(booking_id)

    async def get_booking(self, booking_id: str) -> Booking | None:
        cached = self._active.get(booking_id)
        return cached if cached is not None else await self.store.get_booking(booking_id)

    async def booking_events(self, booking_id: str) -> list[core.AuditEvent]:
        return await self.store.booking_events(booking_id)

    def active_bookings(self) -> list[Booking]:
        return [self._active[b] for b in sorted(self._active)]

    def active_bookings_of(self, technician_id: str) -> list[Booking]:
        """Every open booking of the technician (assigned ones too), by id."""
        return [self._active[b] for b in sorted(self._bookings_of.get(technician_id, ()))]

    def has_other_open(self, technician_id: str, booking_id: str) -> bool:
        """Whether this hub's mirror shows the technician with another open booking."""
        return bool(self._bookings_of.get(technician_id, set()) - {booking_id})

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

    # ------------------------------------------------------------------ changing

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
                terms=spec.terms,
            )
            if booking.technician_id:
                await self.fleet.load(booking.technician_id)
            await self.store.save_booking(booking, events)
            self._index(booking)
            if booking.technician_id:
                await self.publisher.booking(booking)
        await self.announce(Entity.BOOKING, booking.id)
        if self.metrics is not None:
            self.metrics.bookings_created.inc()
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
        cancelled_by: str | None = None,
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
                        cancelled_by=cancelled_by,
                    )
                break
            except _Relock as relock:
                # The stored booking differs from the peek (re-assigned, or this hub's
                # mirror was behind): take the lock of the technician it really concerns.
                locked = relock.technician_id
        else:
            raise Conflict(f"booking {booking_id} keeps changing technician; retry")
        await self.announce(Entity.BOOKING, new.id)
        self._count(event, actor, new)
        if new.final and self.visits is not None:
            await self.visits.record(new)
        if event is BookingEvent.CHECK_IN:
            # Not awaited: the check-in is stored and told; what follows it (the distance
            # driven) must not hold up the arrival decisions queued behind it.
            for hook in self._after_check_in:
                self.afterwards.run(f"after check-in of {new.id}", hook(new))
        return new

    def _count(self, event: BookingEvent, actor: str, new: Booking) -> None:
        """The metrics of one stored transition (only this hub's: sum them over hubs)."""
        if self.metrics is None:
            return
        if event is BookingEvent.CHECK_IN:
            how = "manual" if decided_by_hand(actor) else "auto"
            self.metrics.check_ins.labels(how=how).inc()
            self.metrics.arrivals.labels(on_time=on_time_label(new)).inc()
        if new.final:
            self.metrics.bookings_ended.labels(status=new.status.value).inc()

    async def annotate(self, booking_id: str, **changes: object) -> Booking:
        """Set fields that are not a lifecycle step (an accepted quote, the distance driven):
        stored under the booking's lock, no audit transition, the cluster told."""
        async with self.store.lock(f"booking:{booking_id}", LOCK_TTL_S):
            old = await self.store.get_booking(booking_id)
            if old is None:
                raise NotFound(f"booking {booking_id} does not exist")
            new = msgspec.structs.replace(old, **changes)
            await self.store.save_booking(new, [])
            self._index(new)
        await self.announce(Entity.BOOKING, new.id)
        return new

    async def assign_if_free(
        self,
        booking_id: str,
        technician_id: str,
        actor: str,
        cause: str,
        ranked_version: float | None = None,
    ) -> Booking | None:
        """Assign the technician if they still have no other open booking; else None.

        A dispatch ranking is made from this hub's mirror, a moment ago: a concurrent
        dispatch (here or on another hub) may have taken the technician since. Checked again
        under the technician's lock, reading the store, so two dispatches never both win one.
        ``ranked_version``: the booking's ``updated_t`` when it was ranked; if it changed
        since (another dispatch assigned it), Conflict: a dispatch never re-assigns a
        booking someone else has just assigned.
        """
        async with self.store.lock(technician_lock(technician_id), LOCK_TTL_S):
            # Under the lock: an assignment of this technician elsewhere is stored by now.
            mine = await self.store.active_bookings_of(technician_id)
            taken = core.other_open(mine, technician_id, booking_id)
            if taken:
                return None
            assigned = await self._transition_locked(
                booking_id,
                BookingEvent.ASSIGN,
                actor,
                cause=cause,
                technician_id=technician_id,
                t=None,
                locked_technician=technician_id,
                ranked_version=ranked_version,
            )
        await self.announce(Entity.BOOKING, assigned.id)
        return assigned

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
        cancelled_by: str | None = None,
        ranked_version: float | None = None,
    ) -> Booking:
        """``transition`` under the booking's lock (the caller holds the technician's lock
        when ``locked_technician`` is set); the cluster notice is the caller's."""
        # Read-modify-write under the booking's lock, reading the store (another hub may have
        # changed it since this hub's mirror saw it).
        async with self.store.lock(f"booking:{booking_id}", LOCK_TTL_S):
            old = await self.store.get_booking(booking_id)
            if old is None:
                raise NotFound(f"booking {booking_id} does not exist")
            if ranked_version is not None and old.updated_t != ranked_version:
                raise Conflict(
                    f"booking {booking_id} changed since it was ranked ({old.status.value}"
                    f"{', ' + old.technician_id if old.technician_id else ''}): not re-assigned"
                )
            needed = _technician_decided(old, event, technician_id)
            if needed is not None and needed != locked_technician:
                raise _Relock(needed)
            if needed is not None and core.starts_visit(old, event):
                # The store, not this hub's mirror: another hub may have started a visit of
                # this technician a moment ago (it held the same lock, so it is stored).
                busy = core.other_visit(await self.store.active_bookings_of(needed), needed, old.id)
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
                cancelled_by=cancelled_by,
            )
            if new.active and new.technician_id:
                # Its last known position is in the snapshot from the moment it is assigned.
                await self.fleet.load(new.technician_id)
            await self.store.save_booking(new, [record])
            self._index(new)
            await self.publisher.status(new, record.t, cause)
            await self.publisher.booking(new)
            if old.technician_id and old.technician_id != new.technician_id:
                await self.publisher.booking(new, to=old.technician_id)
        return new
