"""The backend contract: a live message bus and a durable store.

The embedded backend (``memory.py`` bus + ``sqlite/`` store) implements it for one machine;
a Redis backend implements the same two interfaces for several hubs. The hub only talks to
these methods, and the contract tests run against every implementation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import msgspec

from alerts.incident import AuditEntry, Incident
from alerts.safety_alert import SafetyAlert
from realtime.booking import AuditEvent, Booking
from realtime.privacy import AccessEntry


class BusMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """One published message, already encoded for the wire.

    ``conflate_key`` lets a subscriber's outbox replace an older pending message with this
    one; ``final`` tells a subscriber that the subject (a booking) is over and it should close.
    """

    kind: str
    text: str
    conflate_key: str | None = None
    urgent: bool = False
    final: bool = False
    # The operator group it is for (its city's ``operator_group``); None: every operator.
    audience: str | None = None


class DuplicateReporterKey(Exception):
    """``save_incident`` of a new incident under a reporter key another incident holds.

    Nothing is written. The key is what makes a retried SOS one incident, so a second
    incident under it is a bug in the caller, never something to store.
    """

    def __init__(self, reporter_key: str, incident_id: str | None = None) -> None:
        super().__init__(
            f"reporter key {reporter_key!r} already belongs to incident {incident_id or '?'}"
        )
        self.reporter_key = reporter_key
        self.incident_id = incident_id


Subscriber = Callable[[BusMessage], None]
Unsubscribe = Callable[[], None]
Resync = Callable[[], Awaitable[None]]


class TaskSpawner(Protocol):
    """Runs a backend's background loop (the Redis bus's reader and writer) for the hub.

    Passed in by the hub, never built here: the hub's ``realtime.tasks.Supervisor`` is one
    (structurally), so a loop that raises is restarted, counted and reported as not ready.
    The backend stops the task it gets back by cancelling it.
    """

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Start ``factory()`` as task ``name``, again whenever it raises."""
        ...


class StoreUnavailable(Exception):
    """The store cannot be reached or cannot do the operation now; nothing was written.

    Retryable: HTTP answers 503 ``store_unavailable`` with ``Retry-After``.
    """


class StoreFull(StoreUnavailable):
    """The store refused a write for lack of space (SQLite's disk full, Redis's OOM under
    ``maxmemory``). Retryable once an operator frees space: 503 ``store_full``, not ready."""


class DataDirLocked(Exception):
    """Another process has this data dir open: two writers would corrupt each other's view."""


# Exception types of a backend's client library that mean "unavailable" or "full". A backend
# module registers its own (``register_store_errors``), so this module and the HTTP layer
# never import a client library the configured backend does not use.
_UNAVAILABLE: tuple[type[BaseException], ...] = (StoreUnavailable, OSError, TimeoutError)
_FULL: tuple[type[BaseException], ...] = (StoreFull,)


def register_store_errors(
    *,
    unavailable: tuple[type[BaseException], ...] = (),
    full: tuple[type[BaseException], ...] = (),
) -> None:
    """Let ``store_error_kind`` recognise a client library's exceptions."""
    global _UNAVAILABLE, _FULL
    _UNAVAILABLE = (*_UNAVAILABLE, *unavailable)
    _FULL = (*_FULL, *full)


def store_error_kind(exc: BaseException) -> str | None:
    """``"full"``, ``"unavailable"`` (retry later) or None (a bug or a refusal)."""
    if isinstance(exc, _FULL):
        return "full"
    if isinstance(exc, _UNAVAILABLE):
        return "unavailable"
    return None


class LockUnavailable(Exception):
    """A named lock could not be taken in time (held elsewhere, or the backend is away).

    The caller did nothing yet: it refuses the request with a retryable error.
    """


class WorkItem(msgspec.Struct, frozen=True):
    """One entry of a durable work queue, handed to exactly one consumer at a time."""

    id: str
    payload: bytes


class Bus(Protocol):
    """Live fan-out. Subscribers are called synchronously and must not block."""

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    def subscribe(self, channel: str, subscriber: Subscriber) -> Unsubscribe: ...

    async def publish(self, channel: str, message: BusMessage) -> None: ...

    @property
    def connected(self) -> bool:
        """Whether messages reach the other hubs now (always, for a single-process bus)."""
        ...

    async def wait_synced(self, timeout: float = 5.0) -> None:
        """Return once every subscription made so far is in effect (TimeoutError if not):
        only then is no message published by another hub missed."""
        ...

    def on_resync(self, callback: Resync) -> None:
        """Call ``callback`` after the bus reconnected: messages may have been missed, so the
        hub re-reads from the store what it mirrors (a single-process bus never calls it)."""
        ...


class StoredFix(msgspec.Struct, frozen=True, array_like=True):
    """A fix as kept in the location history."""

    technician_id: str
    seq: int
    t: float
    lat: float
    lon: float
    acc: float | None
    speed: float | None
    heading: float | None
    received_t: float


class Store(Protocol):
    """Everything durable: bookings with their audit trail, location history, seqs."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached (the readiness probe)."""
        ...

    async def save_booking(self, booking: Booking, events: list[AuditEvent]) -> None:
        """Write the booking and its new audit events atomically."""
        ...

    async def get_booking(self, booking_id: str) -> Booking | None: ...

    async def active_bookings(self) -> list[Booking]: ...

    async def bookings_created_between(
        self, t_from: float, t_to: float, limit: int
    ) -> list[Booking]:
        """Up to ``limit`` bookings created in [t_from, t_to), oldest first (statistics)."""
        ...

    async def incidents_created_between(
        self, t_from: float, t_to: float, limit: int
    ) -> list[Incident]:
        """Up to ``limit`` incidents raised in [t_from, t_to), open or closed, oldest first."""
        ...

    async def waiting_bookings(self) -> list[Booking]:
        """The bookings still ``requested`` (no technician yet), by id: what batch dispatch
        matches. Indexed, so it costs the waiting bookings, not every booking ever made."""
        ...

    async def active_bookings_of(self, technician_id: str) -> list[Booking]:
        """The active bookings assigned to one technician: what "is this technician busy"
        reads under the technician's lock, at the cost of that technician's bookings, not
        of every open booking of the platform."""
        ...

    async def booking_events(self, booking_id: str) -> list[AuditEvent]: ...

    async def append_fixes(self, fixes: list[StoredFix]) -> None:
        """Write a batch of fixes; a (technician, seq) already stored is ignored."""
        ...

    async def track(
        self, technician_id: str, t_from: float, t_to: float, limit: int
    ) -> list[StoredFix]: ...

    async def highest_seq(self, technician_id: str) -> int:
        """The highest stored seq of a technician, -1 when none."""
        ...

    async def last_fix(self, technician_id: str) -> StoredFix | None:
        """The technician's newest stored fix by time (then seq), None when none."""
        ...

    async def save_incident(
        self, incident: Incident, reporter_key: str, audit: list[AuditEntry]
    ) -> None:
        """Write an incident and its new audit entries atomically.

        ``reporter_key`` (role, subject and the client's SOS id) is unique: it is what makes
        a retried SOS one incident. A new incident under a key already taken raises
        ``DuplicateReporterKey``; an existing incident keeps the key it was first saved with.
        """
        ...

    async def get_incident(self, incident_id: str) -> Incident | None: ...

    async def incident_by_reporter_key(self, reporter_key: str) -> Incident | None: ...

    async def open_incidents(self) -> list[Incident]: ...

    async def incident_audit(self, incident_id: str) -> list[AuditEntry]: ...

    async def save_alert(self, alert: SafetyAlert, audit: list[AuditEntry]) -> None:
        """Write a safety alert and its new audit entries atomically."""
        ...

    async def get_alert(self, alert_id: str) -> SafetyAlert | None: ...

    async def open_alerts(self) -> list[SafetyAlert]: ...

    async def alert_audit(self, alert_id: str) -> list[AuditEntry]: ...

    async def put_document(self, namespace: str, key: str, data: bytes) -> None:
        """Small durable documents: zones, technician profiles, learned model state."""
        ...

    async def get_document(self, namespace: str, key: str) -> bytes | None: ...

    async def delete_document(self, namespace: str, key: str) -> bool:
        """True when something was deleted."""
        ...

    async def list_documents(self, namespace: str) -> dict[str, bytes]: ...

    async def add_counters(self, namespace: str, key: str, deltas: Mapping[str, float]) -> None:
        """Add each delta to its field of the counter set ``key`` (a missing field is 0),
        all of them or none. Additive, so hubs that learn concurrently merge instead of
        overwriting each other: the learned speed model (``geofence/eta_speeds.py``)."""
        ...

    async def get_counters(self, namespace: str, key: str) -> dict[str, float]:
        """Every field of the counter set ``key`` with its total ({} when none)."""
        ...

    # ---------------------------------------------------------------- privacy
    # Retention and erasure (realtime/retention.py, realtime/erasure.py); the rules of
    # what is due live in realtime/privacy.py, these only find and delete.

    async def purge_fixes_before(self, cutoff: float) -> int:
        """Delete every stored fix whose time ``t`` is before ``cutoff``; returns how many.

        ``highest_seq`` still answers as before (a resent old seq is not stored again);
        ``last_fix`` answers None once the newest fix is gone too.
        """
        ...

    async def erase_fixes(self, technician_id: str) -> int:
        """Delete all of a technician's location history (erasure); returns how many.

        As with a purge, the highest seq is remembered, not the fixes.
        """
        ...

    async def purge_closed_incidents_before(self, cutoff: float) -> int:
        """Delete closed (resolved/cancelled) incidents last updated before ``cutoff``, with
        their trails and audit entries; open ones are never touched. Returns how many."""
        ...

    async def purge_closed_alerts_before(self, cutoff: float) -> int:
        """Delete acknowledged safety alerts closed (``acked_t``, else ``t``) before
        ``cutoff``, with their audit entries; open ones are never touched. Returns how many."""
        ...

    async def closed_bookings_before(
        self, cutoff: float, limit: int, after: tuple[float, str] | None = None
    ) -> list[Booking]:
        """Up to ``limit`` closed bookings last updated before ``cutoff`` that are not
        redacted yet (``redacted_t`` unset), oldest first (by ``updated_t``, then id);
        with ``after`` = (updated_t, id) of the last one seen, the ones after it (pages
        over bookings the caller leaves as they are: a city's longer retention)."""
        ...

    async def bookings_of(self, role: str, person_id: str) -> list[Booking]:
        """Every stored booking of a customer (``role`` customer) or a technician."""
        ...

    async def incidents_about(self, person_id: str) -> list[Incident]:
        """Every stored incident, open or closed, whose reporter, technician or customer is
        ``person_id``, by creation time."""
        ...

    async def append_access(self, entry: AccessEntry) -> None:
        """Record one access to a person's data (the access audit)."""
        ...

    async def access_log(self, subject: str, limit: int) -> list[AccessEntry]:
        """The newest ``limit`` access entries about ``subject``, oldest first."""
        ...

    async def purge_access_before(self, cutoff: float) -> int:
        """Delete access entries older than ``cutoff``; returns how many."""
        ...

    # ---------------------------------------------------------------- coordination
    # What several hubs on one store need to act once: named locks, leases and work queues.

    def lock(self, name: str, ttl_s: float) -> AbstractAsyncContextManager[None]:
        """Hold ``name`` exclusively among every hub on this store (``LockUnavailable``).

        The lock expires after ``ttl_s`` even if its holder died, so a killed hub never
        blocks the others for longer than that.
        """
        ...

    async def hold_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease ``name`` for ``holder``; False while another holds it."""
        ...

    async def enqueue_work(self, queue: str, dedupe_key: str, payload: bytes) -> bool:
        """Add work once: False (and nothing added) when ``dedupe_key`` was enqueued before."""
        ...

    async def claim_work(
        self, queue: str, consumer: str, count: int, now: float, reclaim_idle_s: float
    ) -> list[WorkItem]:
        """Up to ``count`` items for ``consumer``: new ones, and ones another consumer took
        but has not acknowledged for ``reclaim_idle_s`` (it died mid-work)."""
        ...

    async def keep_work(self, queue: str, consumer: str, item_id: str, now: float) -> bool:
        """``consumer`` is still working on the item: reset its idle time, so that no other
        consumer reclaims it while its work (a step's deliveries) takes longer than
        ``reclaim_idle_s``. False, and nothing changed, when it is no longer this consumer's
        (reclaimed by another, or acknowledged)."""
        ...

    async def ack_work(self, queue: str, item_id: str) -> None:
        """The item is done: never hand it out again."""
        ...
