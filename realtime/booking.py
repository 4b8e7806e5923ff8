"""The lean booking core: lifecycle states, legal transitions, audit events.

Pure: no I/O and no clock. Every function takes the time as an argument and returns new
values, so the hub, the REST layer and the tests drive the same code (sans-I/O, like h11's
``_state.py``). The whole lifecycle is the ``TRANSITIONS`` table below, driven by the
audited state machine shared with the incident and alert cores (``alerts/lifecycle.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any

import msgspec

from alerts.lifecycle import Lifecycle, Move, allowed_actions


class BookingStatus(StrEnum):
    REQUESTED = "requested"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ARRIVING = "arriving"
    ARRIVED = "arrived"
    IN_SERVICE = "in_service"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class BookingEvent(StrEnum):
    """What happened to a booking; the cause of a transition."""

    ASSIGN = "assign"  # the platform chose (or changed) the technician
    EN_ROUTE = "en_route"  # the technician set off
    APPROACH = "approach"  # the ETA dropped under the "arriving" threshold
    CHECK_IN = "check_in"  # presence detector (or the platform) says the technician is there
    START_SERVICE = "start_service"  # the visit's work started
    CHECK_OUT = "check_out"  # the technician left after the service
    CANCEL = "cancel"
    CREATE = "create"  # the creation record in the audit trail; not a transition


S, E = BookingStatus, BookingEvent

# (state, event) -> next state. Anything not in this table is an illegal transition.
TRANSITIONS: dict[tuple[BookingStatus, BookingEvent], BookingStatus] = {
    (S.REQUESTED, E.ASSIGN): S.ASSIGNED,
    (S.ASSIGNED, E.ASSIGN): S.ASSIGNED,  # re-assignment before the technician sets off
    (S.ASSIGNED, E.EN_ROUTE): S.EN_ROUTE,
    (S.EN_ROUTE, E.APPROACH): S.ARRIVING,
    (S.EN_ROUTE, E.CHECK_IN): S.ARRIVED,
    (S.ARRIVING, E.CHECK_IN): S.ARRIVED,
    (S.ARRIVED, E.START_SERVICE): S.IN_SERVICE,
    (S.IN_SERVICE, E.CHECK_OUT): S.COMPLETED,
    **{
        (state, E.CANCEL): S.CANCELLED
        for state in (S.REQUESTED, S.ASSIGNED, S.EN_ROUTE, S.ARRIVING, S.ARRIVED, S.IN_SERVICE)
    },
}

# Open bookings: a technician is (or may be) on them; the hub keeps them in memory.
ACTIVE_STATUSES = frozenset({S.ASSIGNED, S.EN_ROUTE, S.ARRIVING, S.ARRIVED, S.IN_SERVICE})
FINAL_STATUSES = frozenset({S.COMPLETED, S.CANCELLED})
# The technician's current visit: from setting off until check-out. A technician has at
# most one booking in these statuses, and only its customer sees the technician's position
# and ETA: the next customer, already assigned, must not watch them inside this home.
VISIT_STATUSES = frozenset({S.EN_ROUTE, S.ARRIVING, S.ARRIVED, S.IN_SERVICE})
# How far along a visit is: with several visits of one technician (data from before the
# rule), the one furthest along is the current one.
_VISIT_ORDER = {S.EN_ROUTE: 0, S.ARRIVING: 1, S.ARRIVED: 2, S.IN_SERVICE: 3}

DEFAULT_GEOFENCE_RADIUS_M = 75.0
DEFAULT_EXPECTED_DURATION_S = 3600.0


class IllegalTransition(Exception):
    """An event that the booking's current state does not allow."""

    def __init__(self, booking_id: str, status: BookingStatus, event: BookingEvent) -> None:
        allowed = allowed_actions(TRANSITIONS, status)
        super().__init__(
            f"booking {booking_id} is {status.value}: {event.value!r} is not allowed "
            f"(allowed: {', '.join(allowed) or 'nothing, it is final'})"
        )
        self.booking_id = booking_id
        self.status = status
        self.event = event


class Destination(msgspec.Struct, frozen=True):
    lat: float
    lon: float


class Booking(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    customer_id: str
    destination: Destination
    status: BookingStatus
    created_t: float
    updated_t: float
    technician_id: str | None = None
    expected_duration_s: float = DEFAULT_EXPECTED_DURATION_S
    geofence_radius_m: float = DEFAULT_GEOFENCE_RADIUS_M
    skills: tuple[str, ...] = ()
    # A GeoJSON Polygon/MultiPolygon replacing the default circle (a gated community).
    fence: dict[str, Any] | None = None
    arrived_t: float | None = None
    departed_t: float | None = None
    service_duration_s: float | None = None
    # Set when the personal fields were removed (retention or erasure, realtime/privacy.py).
    redacted_t: float | None = None
    # The city it belongs to (realtime/city.py); None: the deployment's default city.
    city: str | None = None
    # The arrival window promised to the customer: on time = checked in by window_end_t.
    window_start_t: float | None = None
    window_end_t: float | None = None
    # The customer's preferred technician: a bonus in dispatch's score, never a filter.
    preferred_technician_id: str | None = None
    # The travel-fee quote the customer accepted (POST /v1/quotes/travel), its route
    # distance, and the distance the technician's track actually covered to the check-in.
    quote_id: str | None = None
    quoted_distance_m: float | None = None
    driven_m: float | None = None
    # Who cancelled (customer, technician, platform, operator): a technician's cancellation
    # counts against their history score, the others do not.
    cancelled_by: str | None = None
    # Who checked the technician in (the audit actor: ``hub:arrivals`` when the presence
    # detector decided, ``role:sub`` when a person did): the dashboard's automatic share.
    checked_in_by: str | None = None
    # How right the ETAs the customer was shown turned out (scored at the arrival,
    # ``realtime/eta_accuracy.py``): how many were scored, their mean absolute error and
    # the share whose range held the real arrival.
    eta_scored: int | None = None
    eta_mae_s: float | None = None
    eta_range_held: float | None = None

    @property
    def active(self) -> bool:
        """True while the booking is open (assigned to the end of the visit)."""
        return self.status in ACTIVE_STATUSES

    @property
    def in_visit(self) -> bool:
        """True from ``en_route`` until check-out: the technician's current visit."""
        return self.status in VISIT_STATUSES and self.technician_id is not None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def ended_for_customer(self, now: float, grace_s: float) -> float | None:
        """Seconds since the booking ended when that is more than ``grace_s`` ago, else None.

        The customer's hold on a booking (raising SOS on it, refreshing its token) outlives
        the visit by a grace window: the technician may still be at the door.
        """
        if not self.final:
            return None
        ended_s = now - self.updated_t
        return ended_s if ended_s > grace_s else None


class BookingTerms(msgspec.Struct, frozen=True):
    """What the platform may set on a new booking beyond where and who (issue 15)."""

    city: str | None = None
    window_start_t: float | None = None
    window_end_t: float | None = None
    preferred_technician_id: str | None = None
    quote_id: str | None = None
    quoted_distance_m: float | None = None


class AuditEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One transition, as kept in the audit trail."""

    booking_id: str
    t: float
    event: BookingEvent
    from_status: BookingStatus | None
    to_status: BookingStatus
    actor: str
    cause: str | None = None
    technician_id: str | None = None


LIFECYCLE: Lifecycle[Booking, BookingStatus, BookingEvent] = Lifecycle(
    TRANSITIONS,
    initial=S.REQUESTED,
    state_of=lambda booking: booking.status,
    refuse=lambda booking, event: IllegalTransition(booking.id, booking.status, event),
)


def create(
    *,
    booking_id: str,
    customer_id: str,
    destination: Destination,
    t: float,
    actor: str,
    technician_id: str | None = None,
    expected_duration_s: float = DEFAULT_EXPECTED_DURATION_S,
    geofence_radius_m: float = DEFAULT_GEOFENCE_RADIUS_M,
    skills: tuple[str, ...] = (),
    fence: dict[str, Any] | None = None,
    terms: BookingTerms | None = None,
) -> tuple[Booking, list[AuditEvent]]:
    """A new booking and its audit records; already ``assigned`` when a technician is given."""

    def build(move: Move[BookingStatus, BookingEvent]) -> Booking:
        booking = Booking(
            id=booking_id,
            customer_id=customer_id,
            destination=destination,
            status=move.target,
            created_t=move.t,
            updated_t=move.t,
            expected_duration_s=expected_duration_s,
            geofence_radius_m=geofence_radius_m,
            skills=skills,
            fence=fence,
        )
        if terms is None:
            return booking
        return msgspec.structs.replace(booking, **msgspec.structs.asdict(terms))

    booking, created = LIFECYCLE.begin(E.CREATE, t=t, build=build, audit=_auditor(actor, None))
    events = [created]
    if technician_id:
        booking, assigned = apply(booking, E.ASSIGN, t=t, actor=actor, technician_id=technician_id)
        events.append(assigned)
    return booking, events


def apply(
    booking: Booking,
    event: BookingEvent,
    *,
    t: float,
    actor: str,
    cause: str | None = None,
    technician_id: str | None = None,
    cancelled_by: str | None = None,
    driven_m: float | None = None,
) -> tuple[Booking, AuditEvent]:
    """Apply one event; return the new booking and its audit record, or raise IllegalTransition.

    ``cancelled_by`` is kept with a cancellation, ``driven_m`` with a check-in.
    """

    def advance(current: Booking, move: Move[BookingStatus, BookingEvent]) -> Booking:
        changes: dict[str, object] = {"status": move.target, "updated_t": move.t}
        if move.action is BookingEvent.ASSIGN:
            if not technician_id:
                raise ValueError("assign needs a technician_id")
            changes["technician_id"] = technician_id
        if move.action is BookingEvent.CHECK_IN:
            changes["arrived_t"] = move.t
            changes["checked_in_by"] = actor
            if driven_m is not None:
                changes["driven_m"] = driven_m
        if move.action is BookingEvent.CANCEL and cancelled_by is not None:
            changes["cancelled_by"] = cancelled_by
        if move.action is BookingEvent.CHECK_OUT:
            changes["departed_t"] = move.t
            if current.arrived_t is not None:
                changes["service_duration_s"] = move.t - current.arrived_t
        return msgspec.structs.replace(current, **changes)

    return LIFECYCLE.step(booking, event, t=t, advance=advance, audit=_auditor(actor, cause))


def _auditor(
    actor: str, cause: str | None
) -> Callable[[Booking, Move[BookingStatus, BookingEvent]], AuditEvent]:
    """The audit record of one move, naming the technician the booking has after it."""

    def audit(booking: Booking, move: Move[BookingStatus, BookingEvent]) -> AuditEvent:
        return AuditEvent(
            booking_id=booking.id,
            t=move.t,
            event=move.action,
            from_status=move.source,
            to_status=move.target,
            actor=actor,
            cause=cause,
            technician_id=booking.technician_id,
        )

    return audit


def starts_visit(booking: Booking, event: BookingEvent) -> bool:
    """Whether ``event`` makes ``booking`` its technician's current visit (``en_route``)."""
    target = LIFECYCLE.next_state(booking.status, event)
    return target in VISIT_STATUSES and booking.status not in VISIT_STATUSES


def current_visit(bookings: Iterable[Booking]) -> Booking | None:
    """The visit in progress among one technician's bookings, or None.

    At most one exists (the hub refuses a second ``en_route``); should stored data hold
    several, the one furthest along, then the oldest, wins, so every hub picks the same.
    """
    visits = [b for b in bookings if b.in_visit]
    return min(visits, key=lambda b: (-_VISIT_ORDER[b.status], b.updated_t, b.id), default=None)


def other_visit(bookings: Iterable[Booking], technician_id: str, booking_id: str) -> Booking | None:
    """The technician's current visit if it is another booking than ``booking_id``."""
    return current_visit(
        b for b in bookings if b.technician_id == technician_id and b.id != booking_id
    )


def other_open(bookings: Iterable[Booking], technician_id: str, booking_id: str) -> list[Booking]:
    """The technician's open bookings other than ``booking_id`` (dispatch wants none)."""
    mine = (b for b in bookings if b.technician_id == technician_id and b.id != booking_id)
    return sorted((b for b in mine if b.active), key=lambda b: b.id)
