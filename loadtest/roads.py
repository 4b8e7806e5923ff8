"""Route distances on the simulated streets: what a routing engine would answer. Pure.

The trace simulator (``loadtest/traces.py``) draws each trip on its own street grid and
records the route a navigation app would give from the trip's start to the street in front
of the door (``Trace.route``). ``RoadBook`` answers "metres of road from here to that
destination" on those streets, the way OSRM does on a real map: the query point is snapped
to the nearest road (the route), and the answer is the distance to reach it plus the rest of
the route to the door. It knows the streets, including the detours they force, and nothing
else: not the lights, jams, where the technician will park, the walk in, or a missed turn.

``loadtest/osrm_sim.py`` serves a ``RoadBook`` over HTTP in OSRM's route format, so the
evaluation reaches it through the hub's own ``realtime.routing.OsrmRouter``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from geofence.geo import LocalProjection

# Destinations are matched to 6 decimals (~0.1 m), the precision of an OSRM request URL.
KEY_DECIMALS = 6
# Farther than this from the trip's streets is not on this map (OSRM: "NoRoute").
MAX_SNAP_M = 2000.0


def key(lat: float, lon: float) -> tuple[float, float]:
    return round(lat, KEY_DECIMALS), round(lon, KEY_DECIMALS)


@dataclass(frozen=True)
class Road:
    """One trip's route to its destination, as a polyline in metres around the destination
    (the local azimuthal projection of ``geofence.geo``: distances over a city are exact to
    well under a metre per kilometre)."""

    dest_lat: float
    dest_lon: float
    points: tuple[tuple[float, float], ...]  # (x east, y north) metres, start to door
    remaining: tuple[float, ...]  # route metres from each point to the end
    projection: LocalProjection

    @classmethod
    def from_latlon(
        cls, dest_lat: float, dest_lon: float, route: Sequence[tuple[float, float]]
    ) -> Road:
        if len(route) < 2:
            raise ValueError("a route needs at least two points")
        projection = LocalProjection(dest_lat, dest_lon)
        points = tuple(projection.to_xy(lat, lon) for lat, lon in route)
        remaining = [0.0]
        for (x0, y0), (x1, y1) in reversed(list(pairwise(points))):
            remaining.append(remaining[-1] + math.hypot(x1 - x0, y1 - y0))
        return cls(dest_lat, dest_lon, points, tuple(reversed(remaining)), projection)

    def distance_m(self, lat: float, lon: float) -> float | None:
        """Snap to the nearest point of the route; to it, then along the rest. None: off map."""
        x, y = self.projection.to_xy(lat, lon)
        best_snap, best_total = math.inf, math.inf
        for i, ((x0, y0), (x1, y1)) in enumerate(pairwise(self.points)):
            dx, dy = x1 - x0, y1 - y0
            length = math.hypot(dx, dy)
            if length == 0:
                continue
            ex, ey = dx / length, dy / length
            along = min(max((x - x0) * ex + (y - y0) * ey, 0.0), length)
            ox, oy = x - (x0 + along * ex), y - (y0 + along * ey)
            snap = math.hypot(ox, oy)
            if snap < best_snap - 1e-9:
                # The streets form a grid with this segment's street as one axis: getting to
                # the route from a point off it is a drive along and across, not a beeline.
                grid = abs(ox * ex + oy * ey) + abs(oy * ex - ox * ey)
                best_snap = snap
                best_total = grid + (length - along) + self.remaining[i + 1]
        return best_total if best_snap <= MAX_SNAP_M else None


class RoadBook:
    """Routes by destination: the map a routing engine has of the simulated trips."""

    def __init__(self, roads: Iterable[Road] = ()) -> None:
        self._roads: dict[tuple[float, float], Road] = {}
        for road in roads:
            self.add(road)

    def __len__(self) -> int:
        return len(self._roads)

    def add(self, road: Road) -> None:
        self._roads[key(road.dest_lat, road.dest_lon)] = road

    def route_distance_m(
        self, lat: float, lon: float, dest_lat: float, dest_lon: float
    ) -> float | None:
        """Metres of road from the point to the destination; None if it is not on the map."""
        road = self._roads.get(key(dest_lat, dest_lon))
        return None if road is None else road.distance_m(lat, lon)

    @classmethod
    def from_json(cls, data: Any) -> RoadBook:
        """From the ``roads.json`` of ``doorstep simulate-traces``; ValueError if malformed."""
        if not isinstance(data, list):
            raise ValueError("roads: expected a JSON list")
        book = cls()
        for i, entry in enumerate(data):
            try:
                dest = entry["destination"]
                route = [(float(lat), float(lon)) for lat, lon in entry["route"]]
                book.add(Road.from_latlon(float(dest["lat"]), float(dest["lon"]), route))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"roads: entry {i}: bad or missing field {exc}") from None
        return book


def road_entry(
    trip_id: str, dest: Mapping[str, float], route: Sequence[tuple[float, float]]
) -> dict[str, Any]:
    """One ``roads.json`` entry."""
    return {
        "trip_id": trip_id,
        "destination": {"lat": dest["lat"], "lon": dest["lon"]},
        "route": [[round(lat, 7), round(lon, 7)] for lat, lon in route],
    }
