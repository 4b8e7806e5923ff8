"""A routing engine's distances for the replay, through the hub's own routing code.

``OsrmRouter`` and ``CachedRoute`` (``realtime.routing``), refreshed and backed off as the
hub does, so ``eval-arrival --osrm-url`` scores what a hub with DOORSTEP_OSRM_URL would
show. The one module of the harness that imports the hub.
"""

from __future__ import annotations

import asyncio

from geofence.model import Fix
from loadtest.arrival.spec import TripSpec
from realtime.routing import CachedRoute, OsrmRouter


class RoutedDistances:
    """A routing engine's distance for each fix, the way the hub gets it (``Arrivals``).

    One ``CachedRoute`` per trip, refreshed from ``OsrmRouter`` when it is older than
    ``refresh_s`` or the technician drifted off it; after a failure no retry for
    ``refresh_s``. As in the hub, where the call runs in the background, the fix that asks
    still gets the previous answer (None before the first: the default provider); the new
    one serves the following fixes. The replay is synchronous, so each call is awaited on a
    private event loop. ``calls``/``failures`` count the requests.
    """

    def __init__(self, url: str, timeout_s: float = 1.0, refresh_s: float = 60.0) -> None:
        self.refresh_s = refresh_s
        self._loop = asyncio.new_event_loop()
        self._router = OsrmRouter(url, timeout_s=timeout_s)
        self._routes: dict[str, CachedRoute] = {}
        self._failed_t: dict[str, float] = {}
        self.calls = 0
        self.failures = 0

    def __call__(self, spec: TripSpec, fix: Fix) -> float | None:
        route = self._routes.get(spec.trip_id)
        if route is None:
            route = self._routes[spec.trip_id] = CachedRoute(
                spec.dest_lat, spec.dest_lon, refresh_s=self.refresh_s
            )
        answer = route.distance_m(fix.lat, fix.lon)
        failed_t = self._failed_t.get(spec.trip_id)
        backing_off = failed_t is not None and fix.t - failed_t < route.refresh_s
        if not backing_off and route.needs_refresh(fix.t, fix.lat, fix.lon):
            self.calls += 1
            metres = self._loop.run_until_complete(
                self._router.route_distance_m(fix.lat, fix.lon, spec.dest_lat, spec.dest_lon)
            )
            if metres is None:
                self.failures += 1
                self._failed_t[spec.trip_id] = fix.t
            else:
                route.store(fix.t, fix.lat, fix.lon, metres)
                self._failed_t.pop(spec.trip_id, None)
        return answer

    def close(self) -> None:
        self._loop.run_until_complete(self._router.aclose())
        self._loop.close()

    def __enter__(self) -> RoutedDistances:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
