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
from dataclasses import dataclass
from typing import Protocol

from realtime.aio import stop_tasks
from realtime.backends.base import LockUnavailable, Store
from realtime.backends.roster import Roster
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
        )


class Forgets(Protocol):
    """What remembers positions in memory (the fleet)."""

    def forget_positions_before(self, cutoff: float) -> int: ...


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
    ) -> None:
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
        while True:
            batch = await self.store.closed_bookings_before(due.bookings, REDACT_BATCH)
            for booking in batch:
                # A closed booking takes no further transition, so nothing can change it
                # between the read and this write.
                await self.store.save_booking(redact_booking(booking, now), [])
            report.bookings_redacted += len(batch)
            if len(batch) < REDACT_BATCH:
                break
