"""The retention job: delete what is past its retention, on the store, the roster and in
this hub's memory (docs/privacy.md).

What is due is decided by ``realtime.privacy`` (pure, time passed in); this module only asks
the backends to delete it. It runs once at start and then every ``retention_interval_s``.
With several hubs, the store and the roster are purged by one hub at a time, the holder of
the store's ``retention`` lock (a hub that finds it taken skips that run: the other one is
doing the same work); every hub forgets what it remembers itself. Every step is
idempotent, so a run that fails half-way (Redis away) is simply completed by the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from realtime.aio import stop_tasks
from realtime.backends.base import LockUnavailable, Store
from realtime.backends.roster import Roster
from realtime.booking import Booking
from realtime.ports import Clock
from realtime.privacy import Cutoffs, Retention, cutoffs, redact_booking

log = logging.getLogger("doorstep.retention")

LOCK = "retention"
# The lock is held for one run and released after it; it expires after this long if its
# hub died mid-run. A run that outlives it lets another hub run too, which is harmless.
LOCK_TTL_S = 600.0
# Closed bookings redacted per query; the job loops until none is left.
REDACT_BATCH = 500


@dataclass
class PurgeReport:
    """How much one run deleted, by kind (logged, and returned to tests)."""

    fixes: int = 0
    positions: int = 0  # roster last positions with their GEO entries
    memory_positions: int = 0
    incidents: int = 0
    alerts: int = 0  # acknowledged safety alerts, after the incident retention
    bookings_redacted: int = 0
    access_entries: int = 0
    quotes: int = 0  # travel-fee quotes a day past their expiry
    store_purged: bool = False  # False when another hub was purging (held the lock)

    @property
    def deleted(self) -> int:
        return (
            self.fixes
            + self.positions
            + self.incidents
            + self.alerts
            + self.bookings_redacted
            + self.access_entries
            + self.quotes
        )


class Forgets(Protocol):
    """What remembers positions in memory (the fleet)."""

    def forget_positions_before(self, cutoff: float) -> int: ...


class BookingRetention(Protocol):
    """How long a closed booking's personal fields are kept: its city's retention, or the
    hub's (``realtime/cities.py``); and the shortest of them, to know how far to look."""

    def booking_personal_s(self, booking: Booking) -> float: ...

    def shortest_booking_personal_s(self) -> float: ...


class RetentionJob:
    def __init__(
        self,
        *,
        retention: Retention,
        interval_s: float,
        store: Store,
        roster: Roster,
        memory: Forgets,
        clock: Clock,
        bookings_by_city: BookingRetention | None = None,
        purge_quotes: Callable[[float], Awaitable[int]] | None = None,
    ) -> None:
        self.bookings_by_city = bookings_by_city
        self.purge_quotes = purge_quotes
        self.retention = retention
        self.interval_s = interval_s
        self.store = store
        self.roster = roster
        self.memory = memory
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="doorstep-retention")

    async def stop(self) -> None:
        await stop_tasks([self._task])

    async def _loop(self) -> None:
        while True:
            try:
                report = await self.run_once()
                if report.deleted:
                    log.info("retention: %s", report)
            except Exception:
                # A store away must not end retention for good: the next run catches up.
                log.exception("retention run failed; retried in %g s", self.interval_s)
            await asyncio.sleep(self.interval_s)

    async def run_once(self, now: float | None = None) -> PurgeReport:
        """Delete everything due at ``now`` (the hub's clock by default)."""
        now = self.clock() if now is None else now
        due = cutoffs(self.retention, now)
        report = PurgeReport()
        # Memory first: it needs no lock, and no await can interleave with it.
        report.memory_positions = self.memory.forget_positions_before(due.history)
        try:
            async with self.store.lock(LOCK, LOCK_TTL_S):
                await self._purge_store(now, due, report)
        except LockUnavailable:
            pass  # another hub is purging right now: the same work, done once
        return report

    async def _purge_store(self, now: float, due: Cutoffs, report: PurgeReport) -> None:
        report.store_purged = True
        # Each step awaits the store: fixes may arrive meanwhile, but they are new, never due.
        report.fixes = await self.store.purge_fixes_before(due.history)
        report.positions = await self.roster.forget_positions_before(due.history)
        report.incidents = await self.store.purge_closed_incidents_before(due.incidents)
        report.alerts = await self.store.purge_closed_alerts_before(due.incidents)
        report.access_entries = await self.store.purge_access_before(due.incidents)
        await self._redact_bookings(now, due, report)
        if self.purge_quotes is not None:
            report.quotes = await self.purge_quotes(now)

    async def _redact_bookings(self, now: float, due: Cutoffs, report: PurgeReport) -> None:
        """Redact the closed bookings past their retention: the hub's, or their city's.

        With cities, the query looks as far as the shortest retention and pages on past
        the bookings whose own (longer) retention is not over yet, which stay as they are.
        """
        by_city = self.bookings_by_city
        cutoff = due.bookings
        if by_city is not None:
            cutoff = max(cutoff, now - by_city.shortest_booking_personal_s())
        after: tuple[float, str] | None = None
        while True:
            batch = await self.store.closed_bookings_before(cutoff, REDACT_BATCH, after)
            for booking in batch:
                kept_s = (
                    self.retention.booking_personal_s
                    if by_city is None
                    else by_city.booking_personal_s(booking)
                )
                if booking.updated_t >= now - kept_s:
                    continue  # its city keeps it longer: a later run redacts it
                # A closed booking takes no further transition, so nothing can change it
                # between the read and this write.
                await self.store.save_booking(redact_booking(booking, now), [])
                report.bookings_redacted += 1
            if len(batch) < REDACT_BATCH:
                break
            after = (batch[-1].updated_t, batch[-1].id)
