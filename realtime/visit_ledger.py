"""Each technician's last visits, as dispatch's history score reads them.

The records come from Doorstep's own booking lifecycle (the audit trail's final step of
each booking a technician held), not from the platform: a booking that ends (completed or
cancelled) with a technician adds one ``VisitRecord`` to that technician's ledger. Kept
as one document per technician (namespace ``visits``), the newest ``WINDOW_VISITS``, so a
dispatch reads one small document per candidate instead of scanning every booking.

Written under a per-technician ledger lock: two hubs ending two bookings of one technician
at once (a cancellation of the next booking while the current one completes) both land.
A failed write is logged, not raised: the booking's own transition is stored by then, and
a missing record makes the score a little less informed, never wrong about a booking.
"""

from __future__ import annotations

import logging
import time

import msgspec

from realtime.backends.base import Store
from realtime.booking import Booking, BookingStatus
from realtime.cluster import LOCK_TTL_S
from realtime.history_score import WINDOW_VISITS, Outcome, VisitRecord

log = logging.getLogger("doorstep.visits")

VISITS = "visits"
# A ledger read by a dispatch is reused for this long: other hubs' writes show within it.
CACHE_S = 30.0

_records = msgspec.json.Decoder(list[VisitRecord])


def outcome_of(booking: Booking) -> Outcome | None:
    """How a booking ended, for its technician's record (None: not ended, or no technician)."""
    if booking.technician_id is None or not booking.final:
        return None
    if booking.status is BookingStatus.COMPLETED:
        return Outcome.COMPLETED
    if booking.cancelled_by == "technician":
        return Outcome.CANCELLED_BY_TECHNICIAN
    return Outcome.CANCELLED_OTHER


def record_of(booking: Booking) -> VisitRecord | None:
    outcome = outcome_of(booking)
    if outcome is None:
        return None
    return VisitRecord(
        booking_id=booking.id,
        outcome=outcome,
        window_end_t=booking.window_end_t,
        arrived_t=booking.arrived_t,
        ended_t=booking.updated_t,
    )


class VisitLedger:
    def __init__(self, store: Store) -> None:
        self.store = store
        # technician id -> (monotonic read time, records)
        self._cache: dict[str, tuple[float, list[VisitRecord]]] = {}

    async def record(self, booking: Booking) -> None:
        """Add the ended booking to its technician's ledger (idempotent by booking id)."""
        record = record_of(booking)
        if record is None or booking.technician_id is None:
            return
        technician_id = booking.technician_id
        try:
            async with self.store.lock(f"visits:{technician_id}", LOCK_TTL_S):
                records = await self._read(technician_id)
                kept = [r for r in records if r.booking_id != record.booking_id] + [record]
                kept.sort(key=lambda r: (r.ended_t, r.booking_id))
                kept = kept[-WINDOW_VISITS:]
                await self.store.put_document(VISITS, technician_id, msgspec.json.encode(kept))
        except Exception:
            log.warning("visit of booking %s not added to the ledger", booking.id, exc_info=True)
            return
        self._cache[technician_id] = (time.monotonic(), kept)

    async def records(self, technician_id: str) -> list[VisitRecord]:
        cached = self._cache.get(technician_id)
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        records = await self._read(technician_id)
        self._cache[technician_id] = (time.monotonic(), records)
        return records

    async def forget(self, technician_id: str) -> bool:
        """Erase the technician's ledger (their data was erased); whether there was one."""
        self._cache.pop(technician_id, None)
        return await self.store.delete_document(VISITS, technician_id)

    async def _read(self, technician_id: str) -> list[VisitRecord]:
        raw = await self.store.get_document(VISITS, technician_id)
        return [] if raw is None else _records.decode(raw)
