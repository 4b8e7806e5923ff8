"""Optional road distances from an OSRM server, with a per-booking cache.

The ETA works without a routing engine (``geofence.eta.StraightLineProvider``: straight
line x learned circuity). When the operator runs OSRM, ``OsrmRouter`` asks it for the real
driving distance. It never raises and never waits long: any failure (timeout, refused
connection, HTTP error, no route, malformed answer) returns None and the caller uses the
default provider for that fix, so a sick routing server degrades the ETA, not the hub.

One OSRM call per fix would be wasteful (the answer barely changes in a few seconds) and
would put a network round trip on the hot path. ``CachedRoute`` keeps one answer per
booking and scales it by the straight-line distance as the technician progresses; the hub
refreshes it in the background at most every ``refresh_s`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

import httpx

from geofence.geo import distance_m

log = logging.getLogger("doorstep.routing")


class OsrmRouter:
    """Driving distances from OSRM's HTTP route service (``/route/v1/{profile}/...``)."""

    def __init__(self, base_url: str, timeout_s: float = 1.0, profile: str = "driving") -> None:
        self.base_url = base_url.rstrip("/")
        # One second: OSRM answers a city route in milliseconds; anything slower is a sick
        # server, and the ETA is better served now by the fallback than late by OSRM.
        self.timeout_s = timeout_s
        self.profile = profile
        # One pooled client: keep-alive connections save a TCP (and TLS) handshake per call.
        self._client = httpx.AsyncClient(timeout=timeout_s)

    def url(self, lat: float, lon: float, dest_lat: float, dest_lon: float) -> str:
        # OSRM takes "lon,lat" pairs (GeoJSON order); 6 decimals is ~0.1 m.
        coords = f"{lon:.6f},{lat:.6f};{dest_lon:.6f},{dest_lat:.6f}"
        return f"{self.base_url}/route/v1/{self.profile}/{coords}?overview=false"

    async def route_distance_m(
        self, lat: float, lon: float, dest_lat: float, dest_lon: float
    ) -> float | None:
        """Metres of road to the destination, or None if OSRM cannot say so in time."""
        url = self.url(lat, lon, dest_lat, dest_lon)
        try:
            # httpx's timeout applies to each phase (connect, each read); the outer deadline
            # bounds the whole call, so a server trickling bytes cannot hold the caller.
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.get(url)
            response.raise_for_status()
            return _distance(response.json())
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError, ValueError) as exc:
            log.info("OSRM route failed (%s): %r", url, exc)
            return None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> OsrmRouter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _distance(body: Any) -> float:
    """The first route's distance from an OSRM answer; ValueError if there is none."""
    if not isinstance(body, dict) or body.get("code") != "Ok":
        code = body.get("code") if isinstance(body, dict) else type(body).__name__
        raise ValueError(f"OSRM answered {code!r}")
    routes = body.get("routes")
    if not isinstance(routes, list) or not routes or not isinstance(routes[0], dict):
        raise ValueError("OSRM answer has no routes")
    value = routes[0].get("distance")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"OSRM route distance is {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"OSRM route distance is {value!r}")
    return float(value)


@dataclass
class CachedRoute:
    """One booking's last routing answer, scaled as the technician closes in. Pure.

    OSRM's distance ``route_m`` was measured where the straight line to the door was
    ``straight_m``; their ratio is this trip's circuity. Until the next answer, the route
    distance from anywhere else is assumed to be that ratio times the straight line, which
    is exact while driving along the route and shrinks smoothly with progress.
    """

    dest_lat: float
    dest_lon: float
    # Sixty seconds: at city speeds that is ~0.5 km of progress, after which the remaining
    # route may have changed shape (a turn taken, a detour). It bounds OSRM load to one
    # call per active booking per minute.
    refresh_s: float = 60.0
    # A technician who is this much farther from the door than when we asked has left the
    # route (missed turn, detour); the old ratio no longer holds: ask again at once.
    drift_fraction: float = 0.25
    asked_t: float | None = None
    route_m: float = 0.0
    straight_m: float = 0.0

    def store(self, t: float, lat: float, lon: float, route_m: float) -> None:
        """Remember OSRM's answer for the position it was asked about."""
        self.asked_t = t
        self.route_m = route_m
        self.straight_m = distance_m(lat, lon, self.dest_lat, self.dest_lon)

    def needs_refresh(self, t: float, lat: float, lon: float) -> bool:
        """True if there is no answer yet, it is older than ``refresh_s``, or we drifted off."""
        if self.asked_t is None or t - self.asked_t >= self.refresh_s:
            return True
        straight = distance_m(lat, lon, self.dest_lat, self.dest_lon)
        return straight > self.straight_m * (1.0 + self.drift_fraction) + 50.0

    def distance_m(self, lat: float, lon: float) -> float | None:
        """Estimated route distance from here, or None before the first answer."""
        if self.asked_t is None:
            return None
        straight = distance_m(lat, lon, self.dest_lat, self.dest_lon)
        # Right at the door a ratio of two tiny numbers is noise: below 50 m take the route
        # as straight (the last metres are a walk from the car anyway).
        ratio = self.route_m / self.straight_m if self.straight_m > 50.0 else 1.0
        return straight * max(1.0, ratio)
