"""Travel-fee quotes: what the trip to the door costs, priced by the city's tariff.

A quote is the route distance and time (``realtime/travel.py``: the routing engine when
set, else the learned circuity) priced by the city's tariff at the city's local time
(``realtime/tariff.py``), with its breakdown, the ``tariff_version`` used and an expiry
5 minutes on: the price a customer accepts must be the one they saw, not one recomputed
after the tariff or the traffic changed. Quotes are stored (namespace ``quotes``) so any
hub can honour one; a booking carries the one its customer accepted (``quote_id``) and,
after check-in, the distance the technician's track actually covered beside it.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence

import msgspec

from geofence.eta import jitter_m
from geofence.geo import distance_m
from realtime.backends.base import Store, StoredFix
from realtime.booking import Booking, BookingEvent, Destination
from realtime.cities import Cities
from realtime.ports import Clock
from realtime.tariff import FeeQuote, quote_fee
from realtime.travel import TravelEstimates

log = logging.getLogger("doorstep.quotes")

QUOTES = "quotes"
QUOTE_TTL_S = 5 * 60.0
# The quote is for this address: a booking may differ from it by this much (the same
# building's other entrance), not by a street.
SAME_ADDRESS_M = 100.0
# Expired quotes are kept this long (a booking may still be created from one that just
# expired: the answer is "expired", not "unknown"), then deleted.
KEEP_EXPIRED_S = 24 * 3600.0
# At most this many track points are read to measure a drive to the door (6 h at 1 Hz).
MAX_TRACK_POINTS = 21_600


class UnknownQuote(Exception):
    """No quote with this id was issued (or it was deleted long after expiring)."""


class QuoteExpired(Exception):
    """The quote's 5 minutes are over."""


class QuoteMismatch(Exception):
    """The quote was made for another address or city than the booking's."""


class TravelQuote(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    city: str
    origin: Destination
    destination: Destination
    distance_m: float
    duration_s: float
    route_source: str  # routing_engine | learned_circuity
    fee: FeeQuote
    tariff_version: str
    created_t: float
    expires_at: float
    technician_id: str | None = None
    booking_id: str | None = None
    # When the trip was priced for (night and peak hours, the hour's learned speeds): the
    # quote's creation, or the start of the booking's promised window when that is later.
    trip_t: float | None = None


_quote_decoder = msgspec.json.Decoder(TravelQuote)


def driven_distance_m(fixes: Sequence[StoredFix], min_step_m: float = 30.0) -> float:
    """Metres a track covered, without counting GPS jitter as driving: a step counts only
    once the position is ``min_step_m`` (or twice the fix's accuracy) from the last counted
    point, the same rule the ETA uses for "travelled" (``geofence.eta.jitter_m``)."""
    total = 0.0
    anchor: StoredFix | None = None
    for fix in fixes:
        if anchor is None:
            anchor = fix
            continue
        step = distance_m(anchor.lat, anchor.lon, fix.lat, fix.lon)
        if step >= jitter_m(fix.acc, min_step_m):
            total += step
            anchor = fix
    return total


class QuoteDesk:
    def __init__(
        self,
        *,
        store: Store,
        cities: Cities,
        travel: TravelEstimates,
        clock: Clock,
        unwritten: Callable[[str, float, float], list[StoredFix]] | None = None,
    ) -> None:
        self.store = store
        self.cities = cities
        self.travel = travel
        self.clock = clock
        # The technician's fixes accepted but not written yet (the history writer's batch):
        # the frame that decided the check-in is among them when the check-in is measured.
        self.unwritten = unwritten or (lambda _technician, _t_from, _t_to: [])

    async def quote(
        self,
        *,
        city_id: str | None,
        origin: Destination,
        destination: Destination,
        technician_id: str | None = None,
        booking_id: str | None = None,
        starts_t: float | None = None,
    ) -> TravelQuote:
        """Price the trip and store the quote (so every hub can honour it).

        ``starts_t``: when the trip will be made, if later than now (a booking's promised
        window): a visit booked this afternoon for 23:00 pays the night fee, as the tariff
        says, and is on shift by the same instant in dispatch (``realtime/dispatcher.py``).
        """
        city = self.cities.of(await self.cities.require_fresh(city_id))
        now = self.clock()
        trip_t = now if starts_t is None else max(now, starts_t)
        trip = await self.travel.routed(
            origin.lat, origin.lon, destination.lat, destination.lon, trip_t
        )
        fee = quote_fee(city.tariff, trip.distance_m, trip.duration_s, trip_t, city.zone())
        quote = TravelQuote(
            id=uuid.uuid4().hex,
            city=city.id,
            origin=origin,
            destination=destination,
            distance_m=round(trip.distance_m, 1),
            duration_s=round(trip.duration_s, 1),
            route_source=trip.source,
            fee=fee,
            tariff_version=fee.tariff_version,
            created_t=now,
            expires_at=now + QUOTE_TTL_S,
            technician_id=technician_id,
            booking_id=booking_id,
            trip_t=trip_t,
        )
        await self.store.put_document(QUOTES, quote.id, msgspec.json.encode(quote))
        return quote

    async def get(self, quote_id: str) -> TravelQuote | None:
        raw = await self.store.get_document(QUOTES, quote_id)
        return None if raw is None else _quote_decoder.decode(raw)

    async def accepted(
        self,
        quote_id: str,
        *,
        destination: Destination,
        city_id: str | None,
        booking_id: str | None = None,
    ) -> TravelQuote:
        """The quote a booking at ``destination`` in ``city_id`` may carry, or why not.

        A quote made for a booking (``{"booking_id"}``) is that booking's only.
        """
        quote = await self.get(quote_id)
        if quote is None:
            raise UnknownQuote(f"quote {quote_id} was never issued (POST /v1/quotes/travel)")
        if quote.booking_id is not None and quote.booking_id != booking_id:
            raise QuoteMismatch(f"quote {quote_id} was made for booking {quote.booking_id}")
        if self.clock() >= quote.expires_at:
            raise QuoteExpired(
                f"quote {quote_id} expired at {quote.expires_at:.0f}; ask for a new one"
            )
        city = self.cities.of(city_id).id
        if quote.city != city:
            raise QuoteMismatch(f"quote {quote_id} is for city {quote.city}, not {city}")
        off = distance_m(
            quote.destination.lat, quote.destination.lon, destination.lat, destination.lon
        )
        if off > SAME_ADDRESS_M:
            raise QuoteMismatch(
                f"quote {quote_id} is for an address {off:.0f} m from the booking's"
            )
        return quote

    async def driven_to_door(self, booking: Booking) -> float | None:
        """Metres the technician's stored track covered from setting off to the check-in."""
        if booking.technician_id is None or booking.arrived_t is None:
            return None
        events = await self.store.booking_events(booking.id)
        set_off = [e.t for e in events if e.event is BookingEvent.EN_ROUTE]
        if not set_off:
            return None
        technician_id, t_from, t_to = booking.technician_id, set_off[-1], booking.arrived_t
        stored = await self.store.track(technician_id, t_from, t_to, MAX_TRACK_POINTS)
        # Stored and still queued, each fix once (by seq), in time order.
        by_seq = {fix.seq: fix for fix in (*stored, *self.unwritten(technician_id, t_from, t_to))}
        fixes = sorted(by_seq.values(), key=lambda fix: (fix.t, fix.seq))
        if len(fixes) < 2:
            # No track (the phone sent nothing on the way): unknown, not "drove 0 m" beside
            # the quoted distance.
            return None
        return round(driven_distance_m(fixes), 1)

    async def forget_technician(self, technician_id: str) -> int:
        """Delete the quotes priced from the technician's position (their data was erased:
        a quote's origin is where they were); returns how many."""
        deleted = 0
        for key, raw in (await self.store.list_documents(QUOTES)).items():
            try:
                quote = _quote_decoder.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if quote.technician_id == technician_id:
                deleted += await self.store.delete_document(QUOTES, key)
        return deleted

    async def purge_expired(self, now: float) -> int:
        """Delete quotes expired more than ``KEEP_EXPIRED_S`` ago; returns how many."""
        purged = 0
        for key, raw in (await self.store.list_documents(QUOTES)).items():
            try:
                expires_at = _quote_decoder.decode(raw).expires_at
            except (msgspec.DecodeError, msgspec.ValidationError):
                expires_at = -math.inf
            if now - expires_at > KEEP_EXPIRED_S:
                purged += await self.store.delete_document(QUOTES, key)
        return purged
