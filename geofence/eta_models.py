"""The ETA's learned models: road circuity per area and the fleet's travel times.

Kept apart from the estimator (``geofence/eta.py``) because they learn across trips and
outlive them: the hub persists them between restarts (``to_dict``/``from_dict``) and the
arrival evaluation replays them. Pure: completed trips in, expectations out; no I/O, no
clock.

- ``CircuityModel``: driven / straight-line distance per ~5 km grid cell, which turns the
  straight line into a route distance when there is no routing engine
  (``StraightLineProvider``).
- ``TravelTimeModel``: how long the fleet really took for a given distance left, moving or
  stopped, including what no speed explains (parking, sitting in the car, walking in).
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geofence.geo import distance_m, grid_cell

# Driven / straight-line distance in cities: road-network studies find 1.2-1.5 (grids,
# rivers and one-way streets push it up). The model starts here and learns each area's own.
CIRCUITY_PRIOR = 1.35


# --- circuity ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Mean:
    """A running mean over at most ``cap`` observations (then an exponential moving mean)."""

    n: float = 0.0
    mean: float = 0.0

    def add(self, value: float, cap: float) -> None:
        # Capping n turns the running mean into an EMA with weight 1/cap, so an area whose
        # streets change (road works, a new bridge) is relearned within ~cap trips.
        self.n = min(self.n + 1.0, cap)
        self.mean += (value - self.mean) / self.n

    def shrunk(self, prior: float, prior_weight: float) -> float:
        """The mean pulled toward ``prior`` as if the prior were ``prior_weight`` trips."""
        return (prior * prior_weight + self.mean * self.n) / (prior_weight + self.n)


class CircuityModel:
    """Circuity factor per ~5 km grid cell, learned online from completed trips.

    Each cell's estimate is shrunk toward the learned global factor (itself shrunk toward
    ``CIRCUITY_PRIOR``) by ``prior_trips`` pseudo-trips, so one odd trip moves an area only a
    little and an area with no trips yet uses what the whole fleet has learned.
    """

    # A trip shorter than this is dominated by where the car was parked and which side of
    # the block the door is on; its ratio says nothing about the area's streets.
    MIN_STRAIGHT_M = 300.0
    # Below 1 is impossible (a GPS or bookkeeping error); above 4 is a detour, a forgotten
    # errand or a wrong address, not the street network.
    MAX_FACTOR = 4.0

    def __init__(
        self,
        prior: float = CIRCUITY_PRIOR,
        prior_trips: float = 8.0,
        cell_m: float = 5000.0,
        max_trips: float = 200.0,
    ) -> None:
        self.prior = prior
        # Eight pseudo-trips: a single 2.0 trip moves a fresh area from 1.35 to ~1.42.
        self.prior_trips = prior_trips
        # ~5 km: small enough to separate a grid downtown from winding suburbs, large enough
        # that a cell collects trips within weeks.
        self.cell_m = cell_m
        # Forget slowly: beyond this many trips a cell behaves as a moving average.
        self.max_trips = max_trips
        self._global = _Mean()
        self._cells: dict[str, _Mean] = {}

    def cell(self, lat: float, lon: float) -> str:
        """The grid cell key ("row:col") of a point; JSON-friendly."""
        return grid_cell(lat, lon, self.cell_m)

    def observe(
        self,
        origin_lat: float,
        origin_lon: float,
        dest_lat: float,
        dest_lon: float,
        driven_m: float,
    ) -> bool:
        """Learn from one completed trip; False (and nothing learned) if it is absurd."""
        straight = distance_m(origin_lat, origin_lon, dest_lat, dest_lon)
        if not math.isfinite(driven_m) or straight < self.MIN_STRAIGHT_M:
            return False
        factor = driven_m / straight
        if not 1.0 <= factor <= self.MAX_FACTOR:
            return False
        self._global.add(factor, self.max_trips)
        # Both ends' areas learn: the detours of a trip come from the streets around where it
        # starts and where it ends. One cell once if both ends share it.
        for key in {self.cell(origin_lat, origin_lon), self.cell(dest_lat, dest_lon)}:
            self._cells.setdefault(key, _Mean()).add(factor, self.max_trips)
        return True

    def factor(self, lat: float, lon: float) -> float:
        """Expected driven / straight-line distance for trips around this point (>= 1)."""
        overall = self._global.shrunk(self.prior, self.prior_trips)
        cell = self._cells.get(self.cell(lat, lon))
        if cell is not None:
            overall = cell.shrunk(overall, self.prior_trips)
        return max(1.0, overall)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot, for the hub to persist between restarts."""
        return {
            "version": 1,
            "prior": self.prior,
            "prior_trips": self.prior_trips,
            "cell_m": self.cell_m,
            "max_trips": self.max_trips,
            "global": [self._global.n, self._global.mean],
            "cells": {key: [m.n, m.mean] for key, m in self._cells.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CircuityModel:
        """Rebuild a model from ``to_dict``; raises ValueError on anything else."""
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("not a version 1 circuity model")
        try:
            model = cls(
                float(data["prior"]),
                float(data["prior_trips"]),
                float(data["cell_m"]),
                float(data["max_trips"]),
            )
            model._global = _Mean(*map(float, data["global"]))
            model._cells = {
                str(key): _Mean(*map(float, value)) for key, value in data["cells"].items()
            }
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed circuity model: {exc}") from exc
        return model


# --- travel time -------------------------------------------------------------------------


class TravelTimeModel:
    """Seconds to arrival for a given distance left, learned online from completed trips.

    A constant speed cannot fit a city approach: the last kilometres are side streets, turns
    and the search for a parking place, the last metres are parking, sitting in the car and
    walking in, while the first ones are on faster roads. So the fleet's own approaches are
    the prior: for each band of distance left to the fence (log-spaced) and each state of the
    technician (moving, or standing still for a while), the median distance and the median
    time it then really took, over the last ``max_trips`` completed trips. Medians, because
    the customer is best served by the typical wait (it minimises the mean absolute error)
    and the odd trip (a missed turn, a long jam) would drag a mean for weeks. The expected
    time for a distance is read off the line through those points. Bands with few trips are
    shrunk toward the next coarser guess (a standing band toward the moving one, a moving
    band toward ``prior_speed_mps``), so a fresh model is ``distance / prior_speed_mps``.
    """

    # Band edges in metres left to the fence edge: fine near the door, coarse far out.
    EDGES: tuple[float, ...] = (0.0, 30.0, 60.0, 120.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0,
                                8000.0, 16000.0, 32000.0)  # fmt: skip
    STATES: tuple[str, ...] = ("moving", "stopped")

    def __init__(
        self, prior_speed_mps: float = 7.0, prior_trips: float = 3.0, max_trips: int = 300
    ) -> None:
        self.prior_speed_mps = prior_speed_mps
        # Three pseudo-trips: a band needs a handful of trips before it outweighs the prior.
        self.prior_trips = prior_trips
        # A window, not all history: traffic and the fleet's habits change.
        self.max_trips = max_trips
        # (state, band) -> recent (distance, seconds) observations, one per trip
        self._cells: dict[tuple[str, int], deque[tuple[float, float]]] = {}
        self._points: dict[tuple[str, int], tuple[float, float]] = {}  # cache of _point

    def band(self, distance_m: float) -> int:
        return max(0, min(bisect_right(self.EDGES, distance_m) - 1, len(self.EDGES) - 2))

    def observe(self, samples: Sequence[tuple[float, float, str]], arrived_t: float) -> int:
        """Learn from one completed approach: ``samples`` are (t, distance left, state)
        before the arrival at ``arrived_t``; only the first in each band and state counts, so
        a long wait at the door weighs as one trip, not hundreds of fixes."""
        seen: set[tuple[str, int]] = set()
        for t, distance, state in sorted(samples):
            key = (state, self.band(distance))
            if state not in self.STATES or key in seen or t > arrived_t or distance < 0:
                continue
            seen.add(key)
            cell = self._cells.setdefault(key, deque(maxlen=self.max_trips))
            cell.append((distance, arrived_t - t))
        self._points.clear()
        return len(seen)

    def _point(self, state: str, band: int) -> tuple[float, float]:
        """The band's (median distance, median seconds), shrunk toward the coarser guess."""
        point = self._points.get((state, band))
        if point is None:
            point = self._points[(state, band)] = self._compute_point(state, band)
        return point

    def _compute_point(self, state: str, band: int) -> tuple[float, float]:
        lo, hi = self.EDGES[band], self.EDGES[band + 1]
        cell = self._cells.get((state, band))
        if cell:
            d = statistics.median(o[0] for o in cell)
            sec = statistics.median(o[1] for o in cell)
        else:
            d, sec = 0.5 * (lo + hi), 0.0
        prior_s = (
            d / self.prior_speed_mps if state == self.STATES[0] else self.expected_s(d, "moving")
        )
        n, k = (len(cell) if cell else 0), self.prior_trips
        return d, (n * sec + k * prior_s) / (n + k)

    def expected_s(self, distance_m: float, state: str = "moving") -> float:
        """Expected (median) seconds to the fence for ``distance_m`` of road left to it."""
        distance_m = max(0.0, distance_m)
        band = self.band(distance_m)
        d0, s0 = self._point(state, band)
        other = band + (1 if distance_m >= d0 else -1)
        if other < 0:
            # Closer than the first band's median: its time (parking and walking do not
            # shrink to nothing with the last metres).
            return s0
        if other >= len(self.EDGES) - 1:
            return s0 * distance_m / d0 if d0 > 0 else s0  # beyond the last band: its pace
        d1, s1 = self._point(state, other)
        if abs(d1 - d0) < 1e-9:
            return max(0.0, s0)
        return max(0.0, s0 + (s1 - s0) * (distance_m - d0) / (d1 - d0))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot, for the hub to persist between restarts."""
        return {
            "version": 1,
            "prior_speed_mps": self.prior_speed_mps,
            "prior_trips": self.prior_trips,
            "max_trips": self.max_trips,
            "cells": [
                [state, band, [list(o) for o in cell]]
                for (state, band), cell in self._cells.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TravelTimeModel:
        """Rebuild a model from ``to_dict``; raises ValueError on anything else."""
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("not a version 1 travel time model")
        try:
            model = cls(
                float(data["prior_speed_mps"]), float(data["prior_trips"]), int(data["max_trips"])
            )
            for state, band, observations in data["cells"]:
                model._cells[(str(state), int(band))] = deque(
                    ((float(d), float(sec)) for d, sec in observations), maxlen=model.max_trips
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed travel time model: {exc}") from exc
        return model
