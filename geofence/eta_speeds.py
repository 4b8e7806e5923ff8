"""Travel speed by area and hour of day, learned from the fleet's completed approaches. Pure.

A fixed prior speed (``EtaConfig.prior_speed_mps``) cannot know that the ring road at 3 am
is twice as fast as the old town at 5 pm, yet every completed approach drove through some
streets at some hour and says how long they took. ``SpeedModel`` keeps, per grid cell
(~1.5 km) and local hour of day, the metres driven, the seconds they took and how many
trips drove them, and answers with the expected speed along the road ahead: the
estimator's prior, in place of the fixed one.

State is additive on purpose: sums and counts, never means. Learning from a trip is adding
its ``tally`` to the totals, so two hubs that each learned different trips merge by adding
their increments in the store (``Store.add_counters``), in any order, and both read the same
totals back; nothing is ever overwritten (last-writer-wins would drop one hub's learning).

Thin data is shrunk toward coarser levels, each counting as ``prior_trips`` trips:

- global (all cells, all hours) toward the fixed prior speed;
- this hour in any cell, and this cell at any hour, each toward the global pace;
- this cell at this hour toward "this cell's pace, times how much slower this hour is than
  the day" (cell pace x hour pace / global pace): an area seen only at noon still slows
  down in the rush hour the rest of the city shows.

Paces (seconds per metre) are averaged and shrunk, not speeds: time is what adds up along a
road, so a slow kilometre weighs as the time it costs. A fresh model answers the prior
exactly, so an estimator given it behaves as one without it.

The hour: ``utc_offset_s`` shifts Unix time to the local clock. Cities (with their time
zones) come with issue 15; until then one offset serves the whole model, 0 (UTC hours) by
default, which still separates rush hours from nights in one city, only labelled in UTC.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from geofence.geo import distance_m, grid_cell

HOURS = 24
# Counter fields of a (cell, hour): metres driven, seconds taken, trips that drove there.
METRES, SECONDS, TRIPS = "m", "s", "n"
_SEP = "|"


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """A point of an approach, as the speed model learns from it.

    ``driving_s`` is the estimator's driving clock (Unix time less the stops longer than a
    long red light, ``EtaEstimator.driving_s``), so an errand or a break on the way is not
    learned as slow streets; ``travelled_m`` the distance driven so far, GPS jitter
    excluded. ``t`` (wall time) gives the hour.
    """

    t: float
    lat: float
    lon: float
    travelled_m: float
    driving_s: float


@dataclass(slots=True)
class _Sums:
    metres: float = 0.0
    seconds: float = 0.0
    trips: float = 0.0

    def add(self, metres: float, seconds: float, trips: float) -> None:
        self.metres += metres
        self.seconds += seconds
        self.trips += trips


class SpeedModel:
    """Expected travel speed per ~1.5 km cell and local hour, learned from approaches."""

    # A segment faster than this (216 km/h) is a GPS jump or a clock error, not a street.
    MAX_SEGMENT_SPEED_MPS = 60.0

    def __init__(
        self,
        prior_speed_mps: float = 7.0,
        prior_trips: float = 3.0,
        cell_m: float = 1500.0,
        utc_offset_s: float = 0.0,
        trip_evidence_m: float = 500.0,
    ) -> None:
        if prior_speed_mps <= 0 or prior_trips <= 0 or cell_m <= 0 or trip_evidence_m <= 0:
            raise ValueError("speed model parameters must be positive")
        self.prior_speed_mps = prior_speed_mps
        # Three pseudo-trips, as the travel time model: one trip through a jam moves a cell's
        # hour a quarter of the way, a handful of trips decide it.
        self.prior_trips = prior_trips
        # ~1.5 km: a district's streets (old town, ring road, suburb) differ; finer cells
        # would each wait months for trips at every hour.
        self.cell_m = cell_m
        self.utc_offset_s = utc_offset_s
        # A trip counts as full evidence about a cell once it drove this far in it: one that
        # only clipped a corner (100 m, one light) says less about the cell's streets.
        self.trip_evidence_m = trip_evidence_m
        self._fine: dict[tuple[str, int], _Sums] = {}
        self._cells: dict[str, _Sums] = {}
        self._hours: dict[int, _Sums] = {}
        self._global = _Sums()
        self._paces: dict[tuple[str, int], float] = {}  # cache of pace_s_per_m

    # --- keys ---

    def cell(self, lat: float, lon: float) -> str:
        return grid_cell(lat, lon, self.cell_m)

    def hour(self, t: float) -> int:
        """Local hour of day (0-23) of Unix time ``t``."""
        return int(((t + self.utc_offset_s) // 3600) % HOURS)

    # --- learning ---

    def tally(self, track: Sequence[TrackPoint]) -> dict[str, float]:
        """The counter increments one completed approach teaches (nothing is learned yet).

        Each segment between consecutive points adds its metres and seconds to the cell of
        its midpoint at the local hour it was driven; each (cell, hour) the trip drove counts
        the trip once. Add the result with ``add`` (and to the store's counters).
        """
        sums: dict[tuple[str, int], _Sums] = {}
        for a, b in pairwise(track):
            metres, seconds = b.travelled_m - a.travelled_m, b.driving_s - a.driving_s
            if not (metres > 0 and seconds > 0) or metres / seconds > self.MAX_SEGMENT_SPEED_MPS:
                continue
            key = (
                self.cell(0.5 * (a.lat + b.lat), 0.5 * (a.lon + b.lon)),
                self.hour(0.5 * (a.t + b.t)),
            )
            sums.setdefault(key, _Sums()).add(metres, seconds, 0.0)
        out: dict[str, float] = {}
        for (cell, hour), s in sums.items():
            out.update(_fields(cell, hour, s.metres, s.seconds, 1.0))
        return out

    def add(self, counters: Mapping[str, float]) -> int:
        """Add counter increments (a ``tally``, or totals read from the store) to the model;
        returns how many fields were taken. Unknown or malformed fields are skipped: the
        store may hold fields a newer version wrote."""
        taken = 0
        for field, value in counters.items():
            parsed = _parse(field)
            if parsed is None or not math.isfinite(value):
                continue
            cell, hour, kind = parsed
            delta = (
                (value, 0.0, 0.0)
                if kind == METRES
                else (0.0, value, 0.0)
                if kind == SECONDS
                else (0.0, 0.0, value)
            )
            self._fine.setdefault((cell, hour), _Sums()).add(*delta)
            self._cells.setdefault(cell, _Sums()).add(*delta)
            self._hours.setdefault(hour, _Sums()).add(*delta)
            self._global.add(*delta)
            taken += 1
        if taken:
            self._paces.clear()
        return taken

    def replace(self, counters: Mapping[str, float]) -> int:
        """Forget everything and take these totals (the merged counters of every hub)."""
        self._fine, self._cells, self._hours = {}, {}, {}
        self._global = _Sums()
        self._paces.clear()
        return self.add(counters)

    def counters(self) -> dict[str, float]:
        """The whole state as counter fields: what ``replace`` rebuilds the model from."""
        out: dict[str, float] = {}
        for (cell, hour), s in self._fine.items():
            out.update(_fields(cell, hour, s.metres, s.seconds, s.trips))
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot with the parameters, for files (the hub keeps counters)."""
        return {
            "version": 1,
            "prior_speed_mps": self.prior_speed_mps,
            "prior_trips": self.prior_trips,
            "cell_m": self.cell_m,
            "utc_offset_s": self.utc_offset_s,
            "trip_evidence_m": self.trip_evidence_m,
            "counters": self.counters(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> SpeedModel:
        """Rebuild from ``to_dict``; raises ValueError on anything else."""
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("not a version 1 speed model")
        try:
            model = cls(
                float(data["prior_speed_mps"]),
                float(data["prior_trips"]),
                float(data["cell_m"]),
                float(data["utc_offset_s"]),
                float(data["trip_evidence_m"]),
            )
            model.add({str(k): float(v) for k, v in data["counters"].items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed speed model: {exc}") from exc
        return model

    @property
    def trips(self) -> float:
        """Trip-cells learned (a trip counts once per cell and hour it drove)."""
        return self._global.trips

    # --- answers ---

    def pace_s_per_m(self, cell: str, hour: int) -> float:
        """Expected seconds per metre in ``cell`` at local ``hour``, shrunk (see module)."""
        key = (cell, hour)
        pace = self._paces.get(key)
        if pace is None:
            overall = self._shrunk(self._global, 1.0 / self.prior_speed_mps)
            at_hour = self._shrunk(self._hours.get(hour), overall)
            in_cell = self._shrunk(self._cells.get(cell), overall)
            pace = self._paces[key] = self._shrunk(self._fine.get(key), in_cell * at_hour / overall)
        return pace

    def speed_mps(self, lat: float, lon: float, t: float) -> float:
        """Expected travel speed around a point at the local hour of ``t``."""
        return 1.0 / self.pace_s_per_m(self.cell(lat, lon), self.hour(t))

    def speed_along(
        self, lat: float, lon: float, dest_lat: float, dest_lon: float, t: float
    ) -> float:
        """Expected speed from the point to the destination at the hour of ``t``: the
        straight line sampled every third of a cell, the paces of the cells it crosses
        averaged (the road is unknown; the straight line crosses the same districts)."""
        hour = self.hour(t)
        points = list(_along(lat, lon, dest_lat, dest_lon, self.cell_m / 3.0))
        total = sum(self.pace_s_per_m(self.cell(a, b), hour) for a, b in points)
        return len(points) / total

    def _shrunk(self, sums: _Sums | None, parent: float) -> float:
        if sums is None or sums.metres <= 0 or sums.seconds <= 0:
            return parent
        evidence = max(0.0, min(sums.trips, sums.metres / self.trip_evidence_m))
        own = sums.seconds / sums.metres
        return (evidence * own + self.prior_trips * parent) / (evidence + self.prior_trips)


def _fields(cell: str, hour: int, metres: float, seconds: float, trips: float) -> dict[str, float]:
    base = f"{cell}{_SEP}{hour}{_SEP}"
    return {base + METRES: metres, base + SECONDS: seconds, base + TRIPS: trips}


def _parse(field: str) -> tuple[str, int, str] | None:
    parts = field.split(_SEP)
    if len(parts) != 3 or parts[2] not in (METRES, SECONDS, TRIPS) or not parts[1].isdigit():
        return None
    hour = int(parts[1])
    return (parts[0], hour, parts[2]) if hour < HOURS else None


def _along(
    lat: float, lon: float, dest_lat: float, dest_lon: float, step_m: float
) -> Iterator[tuple[float, float]]:
    """Midpoints of equal pieces (at most ``step_m`` long) of the line to the destination.

    Interpolated in degrees: over a city the line bends by centimetres, far below a cell.
    """
    n = max(1, math.ceil(distance_m(lat, lon, dest_lat, dest_lon) / step_m))
    for i in range(n):
        f = (i + 0.5) / n
        yield lat + f * (dest_lat - lat), lon + f * (dest_lon - lon)
