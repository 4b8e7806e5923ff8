"""The narrow interfaces the hub's services are given, instead of the hub itself.

Each service (arrivals, zoning, the safety desk, the watchdog, alerts, retention, erasure)
declares what it needs from the rest of the hub as one of these protocols, and the hub
(``realtime/hub.py``, the composition root) passes in the object that has it. A service can
then be read, and tested, knowing only these few methods; and nothing points back at the hub.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from alerts.incident import AuditEntry, Incident
from alerts.safety_alert import SafetyAlert
from realtime import protocol as wire
from realtime.booking import Booking, BookingEvent

Clock = Callable[[], float]


class Announce(Protocol):
    """Tell the other hubs an entity changed (``realtime/cluster.py``)."""

    def __call__(self, entity: str, entity_id: str = "", /) -> Awaitable[None]: ...


class Spawn(Protocol):
    """Run a background loop under the hub's supervisor (restarted when it raises)."""

    def __call__(self, name: str, run: Callable[[], Awaitable[None]], /) -> object: ...


class BookingView(Protocol):
    """Read-only: the bookings this hub mirrors (the store is the truth)."""

    async def get_booking(self, booking_id: str) -> Booking | None: ...

    def active_bookings(self) -> list[Booking]: ...

    def active_bookings_of(self, technician_id: str) -> list[Booking]: ...

    def current_visit(self, technician_id: str) -> Booking | None: ...


class BookingCommands(BookingView, Protocol):
    """The one place that changes a booking (``realtime/bookings_desk.py``)."""

    async def transition(
        self,
        booking_id: str,
        event: BookingEvent,
        actor: str,
        *,
        cause: str | None = None,
        technician_id: str | None = None,
        t: float | None = None,
    ) -> Booking: ...

    async def annotate(self, booking_id: str, **changes: object) -> Booking:
        """Set fields that are not a lifecycle step (no audit transition)."""
        ...


class FleetView(Protocol):
    """Read-only: where technicians are and when they were last heard."""

    def last_position(self, technician_id: str) -> wire.Position | None: ...

    async def heard_t(self, technician_id: str) -> float | None: ...


class ProfileView(Protocol):
    """The display name a notification uses for a technician, when the platform gave one."""

    def name_of(self, technician_id: str) -> str | None: ...


class AlertRaiser(Protocol):
    """Raise a safety alert (stored, then shown to operators) once."""

    async def raise_alert(
        self, alert: SafetyAlert, entry: AuditEntry
    ) -> tuple[SafetyAlert, bool]: ...


class SystemIncidents(Protocol):
    """Raise an incident the hub decided itself (an unanswered "are you OK?")."""

    async def raise_system(
        self, *, kind: str, technician_id: str, booking_id: str, client_id: str, note: str
    ) -> tuple[Incident, bool]: ...


@dataclass(frozen=True)
class AcceptedFixes:
    """One frame's accepted fixes, as the fix pipeline hands them on."""

    technician_id: str
    fixes: Sequence[wire.Location]  # in the frame's order (a batch: oldest first)
    # The technician's current visit (the booking whose customer sees them), or None.
    visit: Booking | None
    # Time of the newest fix known before these: what follows the technician's position
    # (zones) skips fixes older than it, an offline batch arriving late.
    previous_t: float


class FixConsumer(Protocol):
    """A service that takes every accepted fix (``realtime/pipeline.py``), after they are
    queued for the history and the newest position is published."""

    async def on_fixes(self, accepted: AcceptedFixes) -> None: ...
