"""Route distance and travel time between two points, as the customer's ETA would say.

Dispatch ranks by it and travel-fee quotes price it, so "fastest to arrive" and "the trip
you pay for" mean what the tracking page shows: the routing engine's road distance when
one is configured (``DOORSTEP_OSRM_URL``; the straight line x the learned circuity when it
is not, or does not answer within its timeout), and the time from the same ``EtaEstimator``
and learned models the arrival tracker uses (the fleet's travel times, the speeds learned
per area and hour), from a standing start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from geofence.eta import EtaConfig, EtaEstimator, RouteProvider
from geofence.eta_models import TravelTimeModel
from geofence.eta_speeds import SpeedModel
from geofence.model import Fix
from realtime.routing import OsrmRouter

Source = Literal["routing_engine", "learned_circuity"]
# A dispatch asks the routing engine only for this many candidates (the best by the
# learned estimate): a few hundred route calls per booking would queue behind each other.
MAX_ROUTED = 20


@dataclass(frozen=True)
class Travel:
    distance_m: float
    duration_s: float
    source: Source


class ModelsView(Protocol):
    """What ``TravelEstimates`` reads of the arrival service (``realtime/arrivals.py``)."""

    @property
    def provider(self) -> RouteProvider: ...

    @property
    def router(self) -> OsrmRouter | None: ...

    @property
    def travel_times(self) -> TravelTimeModel: ...

    @property
    def speeds(self) -> SpeedModel: ...

    @property
    def eta_config(self) -> EtaConfig: ...


class TravelEstimates:
    """Reads the arrival service's current models at each call (they are replaced when
    re-read from the store), so a quote and a dispatch see what was learned so far."""

    def __init__(self, models: ModelsView) -> None:
        self.models = models

    def learned(
        self, lat: float, lon: float, dest_lat: float, dest_lon: float, now: float
    ) -> Travel:
        distance = self.models.provider.route_distance_m(lat, lon, dest_lat, dest_lon)
        duration = self._duration(lat, lon, dest_lat, dest_lon, distance, now)
        return Travel(distance, duration, "learned_circuity")

    async def routed(
        self, lat: float, lon: float, dest_lat: float, dest_lon: float, now: float
    ) -> Travel:
        """The routing engine's distance if it answers, else the learned estimate."""
        router = self.models.router
        if router is not None:
            distance = await router.route_distance_m(lat, lon, dest_lat, dest_lon)
            if distance is not None:
                duration = self._duration(lat, lon, dest_lat, dest_lon, distance, now)
                return Travel(distance, duration, "routing_engine")
        return self.learned(lat, lon, dest_lat, dest_lon, now)

    async def refine(
        self,
        origins: Sequence[tuple[str, float, float]],
        dest_lat: float,
        dest_lon: float,
        now: float,
    ) -> dict[str, Travel]:
        """Every origin's learned estimate; the ``MAX_ROUTED`` quickest of them asked of the
        routing engine too (concurrently), when there is one."""
        found = {key: self.learned(lat, lon, dest_lat, dest_lon, now) for key, lat, lon in origins}
        if self.models.router is None:
            return found
        quickest = sorted(origins, key=lambda o: (found[o[0]].duration_s, o[0]))[:MAX_ROUTED]
        routed = await asyncio.gather(
            *(self.routed(lat, lon, dest_lat, dest_lon, now) for _, lat, lon in quickest)
        )
        found.update((key, travel) for (key, _, _), travel in zip(quickest, routed, strict=True))
        return found

    def _duration(
        self, lat: float, lon: float, dest_lat: float, dest_lon: float, distance: float, now: float
    ) -> float:
        models = self.models
        estimator = EtaEstimator(
            dest_lat,
            dest_lon,
            models.eta_config,
            travel_times=models.travel_times,
            speeds=models.speeds,
        )
        return estimator.update(Fix(t=now, lat=lat, lon=lon), distance).seconds
