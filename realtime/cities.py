"""The cities the platform configures (``PUT /v1/cities/{id}``), mirrored on every hub.

Stored as documents (namespace ``cities``), kept in memory and re-read when another hub
announces a change, like technician profiles. A booking or technician without a city, or
one naming the ``default`` city before the platform configured it, gets ``DEFAULT_CITY``
(UTC, no service area, a free tariff, the hub's own timings): a deployment that never
configures a city behaves as before cities existed.
"""

from __future__ import annotations

import logging
import math

import msgspec

from realtime.backends.base import Store
from realtime.booking import Booking
from realtime.city import DEFAULT_CITY, City
from realtime.cluster import Entity
from realtime.ports import Announce

log = logging.getLogger("doorstep.cities")

CITIES = "cities"
DEFAULT_CITY_ID = DEFAULT_CITY.id

_city_decoder = msgspec.json.Decoder(City)


class UnknownCity(Exception):
    """A booking or technician names a city the platform has not configured."""


class Cities:
    def __init__(
        self, store: Store, announce: Announce, default_retention_s: float = math.inf
    ) -> None:
        self.store = store
        self.announce = announce
        # The hub's retention of closed bookings' personal fields, for cities with none.
        self.default_retention_s = default_retention_s
        self._cities: dict[str, City] = {}

    async def load(self) -> None:
        cities = {}
        for key, raw in (await self.store.list_documents(CITIES)).items():
            try:
                cities[key] = _city_decoder.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                # Stored by a newer or older hub with other rules: skip it, loudly, rather
                # than refuse to start (the platform can PUT it again).
                log.error("city %s in the store does not decode; ignored", key, exc_info=True)
        self._cities = cities

    async def refresh(self, city_id: str) -> None:
        raw = await self.store.get_document(CITIES, city_id)
        if raw is None:
            self._cities.pop(city_id, None)
        else:
            self._cities[city_id] = _city_decoder.decode(raw)

    def all(self) -> list[City]:
        known = dict(self._cities)
        known.setdefault(DEFAULT_CITY_ID, DEFAULT_CITY)
        return [known[key] for key in sorted(known)]

    def configured(self, city_id: str) -> City | None:
        """The city as the platform configured it (the default city even if it did not)."""
        city = self._cities.get(city_id)
        if city is None and city_id == DEFAULT_CITY_ID:
            return DEFAULT_CITY
        return city

    def of(self, city_id: str | None) -> City:
        """The city a booking or technician belongs to, for its rules (never fails: a city
        deleted from under a booking falls back to the default, with a warning)."""
        if city_id is None:
            return self.configured(DEFAULT_CITY_ID) or DEFAULT_CITY
        city = self.configured(city_id)
        if city is None:
            log.warning("city %s is not configured: the default city's rules apply", city_id)
            return self.of(None)
        return city

    def require(self, city_id: str | None) -> str | None:
        """``city_id`` if the platform may use it now (configured, or the default)."""
        if city_id is not None and self.configured(city_id) is None:
            raise UnknownCity(f"city {city_id} is not configured (PUT /v1/cities/{city_id})")
        return city_id

    def booking_personal_s(self, booking: Booking) -> float:
        """How long the booking's personal fields are kept after it closed: its city's
        ``retention_days``, else the hub's setting."""
        days = self.of(booking.city).retention_days
        return self.default_retention_s if days is None else days * 86_400.0

    def shortest_booking_personal_s(self) -> float:
        days = [c.retention_days for c in self.all() if c.retention_days is not None]
        return min([self.default_retention_s, *(d * 86_400.0 for d in days)])

    async def learn(self, city_id: str | None) -> None:
        """Read from the store a city this hub has not heard of (if it is there).

        Another hub's PUT answers the platform before this hub's mirror hears of it (the
        cluster notice is a moment behind): a booking sent here in that moment must not be
        refused ``unknown_city`` nor judged by the default city's rules. A miss costs one
        store read; a city this hub knows costs none.
        """
        if city_id is not None and self.configured(city_id) is None:
            await self.refresh(city_id)

    async def require_fresh(self, city_id: str | None) -> str | None:
        """``require``, after ``learn``: what an endpoint naming a city calls."""
        await self.learn(city_id)
        return self.require(city_id)

    async def put(self, city: City) -> None:
        await self.store.put_document(CITIES, city.id, msgspec.json.encode(city))
        self._cities[city.id] = city
        await self.announce(Entity.CITY, city.id)
