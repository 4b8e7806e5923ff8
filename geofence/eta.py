"""Live ETA to the customer's door: remaining route distance over a travel speed, smoothed.

The customer watches this number, so it must count down like a clock and move only for a
reason. Three parts, all pure (fixes and times in, estimates out; no I/O, no clock):

- Distance: the caller passes the remaining *route* distance for each fix. It comes from a
  ``RouteProvider``; the default, ``StraightLineProvider``, multiplies the straight line by
  a circuity factor (driven / straight distance) that ``CircuityModel`` learns online from
  completed trips in the area, so no routing engine is needed. The hub may instead pass a
  routing engine's distance (``realtime/routing.py``).
- Speed: the technician's travel speed over the last few minutes *including stops*, pooled
  with a prior speed in proportion to the evidence. Stops at lights are part of driving in
  a city; the ones just seen predict the ones ahead, so a red light nudges the ETA instead
  of making it explode as an instantaneous speed of zero would. A stop longer than a long
  light is not counted as driving at all: the arrival simply slips with it.
- Travel time (optional): ``TravelTimeModel`` learns from completed trips how long the
  fleet really took for a given distance left, moving or stopped, including what no speed
  explains (parking, sitting in the car, walking in). When given, the raw ETA is a blend
  of that and distance / speed. The ETA is to the fence edge, where the arrival is stamped:
  the caller passes how much of the route lies inside the fence (``margin_m``).
- Smoothing: the predicted arrival *time* is smoothed exponentially, not the seconds left.
  When nothing new happens the arrival time stays put and the seconds left fall one per
  second; noise between fixes moves the arrival time by a fraction of a second.

``Eta`` carries an uncertainty band: with ``ErrorBands`` (``geofence/eta_band.py``) the
range that held most of the fleet's past arrivals at that ETA; before it has learned enough,
a fixed-width band that is wider while the speed is mostly prior and narrows, in seconds,
as the technician approaches.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from geofence.eta_band import ErrorBands
from geofence.geo import distance_m
from geofence.model import Fix

# Driven / straight-line distance in cities: road-network studies find 1.2-1.5 (grids,
# rivers and one-way streets push it up). The model starts here and learns each area's own.
CIRCUITY_PRIOR = 1.35
# The baseline the estimator is evaluated against: 30 km/h on the straight line.
BASELINE_SPEED_MPS = 8.33

_M_PER_DEG_LAT = 111_320.0


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
        step = self.cell_m / _M_PER_DEG_LAT
        row = math.floor(lat / step)
        # Meridians converge: size longitude cells at the row's centre latitude so cells are
        # about cell_m wide everywhere (clamped near the poles, where nobody drives).
        centre = (row + 0.5) * step
        lon_step = step / max(math.cos(math.radians(centre)), 0.01)
        return f"{row}:{math.floor(lon / lon_step)}"

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


# --- route providers -----------------------------------------------------------------------


class RouteProvider(Protocol):
    def route_distance_m(self, lat: float, lon: float, dest_lat: float, dest_lon: float) -> float:
        """Metres of road from the point to the destination. Sync and pure: no I/O."""
        ...


class StraightLineProvider:
    """The default provider: straight line times the circuity learned near the destination."""

    def __init__(self, circuity: CircuityModel) -> None:
        self.circuity = circuity

    def route_distance_m(self, lat: float, lon: float, dest_lat: float, dest_lon: float) -> float:
        straight = distance_m(lat, lon, dest_lat, dest_lon)
        return straight * self.circuity.factor(dest_lat, dest_lon)


def baseline_eta_s(
    lat: float, lon: float, dest_lat: float, dest_lon: float, speed_mps: float = BASELINE_SPEED_MPS
) -> float:
    """Straight-line distance at a constant speed: the naive ETA the estimator must beat."""
    return distance_m(lat, lon, dest_lat, dest_lon) / speed_mps


# --- estimator -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EtaConfig:
    # Urban door-to-door average *including* lights and junctions (~25 km/h). Used alone
    # until the technician has moved, then pooled with what is observed.
    prior_speed_mps: float = 7.0
    # The prior counts as this many seconds of observed travel: after 20 min of driving the
    # technician's own speed carries half the weight. A few minutes of one trip say little
    # about the rest of it (the jam just passed, the lights just caught are not ahead): on
    # the evaluation traces a 90 s weight gave 1.0x the baseline's error at 10-20 min,
    # 1200 s gives 0.70x (loadtest/results/arrival.md).
    prior_weight_s: float = 1200.0
    # Observed speed = distance travelled / time over this window, stops included. Several
    # light cycles long, so one red light is a small part of it; short enough to notice
    # the technician leaving the ring road for side streets.
    speed_window_s: float = 300.0
    # A stop longer than a long red light (or a few short ones at one junction) stops
    # counting as slow driving: see ``EtaEstimator._advance``.
    max_counted_stop_s: float = 90.0
    # Never plan on slower than walking, whatever the window says (a crawl through a jam
    # must not send the ETA toward infinity).
    min_speed_mps: float = 1.0
    # A fix implying more than this from the last good one is a GPS jump (216 km/h).
    max_speed_mps: float = 60.0
    # Phone-reported speeds below this are parked-phone noise (Doppler reports 0.2-0.8 m/s
    # standing still).
    min_moving_speed_mps: float = 1.0
    # Displacements shorter than this from the last counted point are GPS jitter (5-15 m a
    # fix, so two fixes of a parked car can be ~30 m apart): they do not count as travel.
    min_step_m: float = 30.0
    # Longest smoothing time constant on the arrival time: far away, a fix moves the
    # arrival by 1 - exp(-dt/30) of the disagreement (15 % for a fix every 5 s). With the
    # heavier prior the raw estimate is steadier, so less smoothing lag is needed.
    smoothing_s: float = 30.0
    # ...but never longer than this fraction of the ETA: two minutes out, the estimate must
    # follow reality within seconds, not a minute late.
    smoothing_fraction: float = 0.15
    # ...and never shorter than this, so a single noisy fix near the door moves it little.
    min_smoothing_s: float = 5.0
    # The shown ETA stays within [floor, ceiling] x the raw one: smoothing may lag, never
    # lie ("0 s" while a kilometre away, or minutes after a shortcut).
    floor_fraction: float = 0.6
    ceiling_fraction: float = 1.5
    # Band: relative spread below/above the ETA once the speed is the technician's own
    # (traffic makes late likelier than early), widened by ``band_prior`` x the prior's
    # share of the speed, plus an absolute margin for parking and the last few metres.
    band_low: float = 0.25
    band_high: float = 0.35
    band_prior: float = 0.25
    band_margin_s: float = 20.0
    # Consecutive rejected fixes after which the *earlier* fix is taken to have been the
    # outlier and tracking restarts from the new position.
    outlier_reset_count: int = 3
    # Not moved (by the jitter filter) for this long: "stopped" for the travel time model
    # (a red light, a jam, or parked at the door), longer than a slow start at a green.
    stopped_after_s: float = 20.0
    # With a ``TravelTimeModel``: the raw ETA is this share of the fleet's learned time for
    # the distance and state, the rest distance / the technician's own blended speed (which
    # still knows this driver's pace and the jam they are in). Half and half: on seed 1 of
    # the evaluation traces 0.5 and 0.75 were within 2 % of each other beyond 5 minutes,
    # 0.5 better inside 5 (loadtest/results/arrival.md).
    learned_weight: float = 0.5


@dataclass(frozen=True, slots=True)
class Eta:
    """One estimate. ``seconds`` is from the time of the fix (or ``estimate_at`` time)."""

    seconds: float
    arrival_t: float
    distance_m: float  # remaining route distance
    low_s: float
    high_s: float
    speed_mps: float  # the travel speed the estimate uses


class EtaEstimator:
    """Smoothed ETA for one technician driving to one destination. Feed fixes in time order."""

    def __init__(
        self,
        dest_lat: float,
        dest_lon: float,
        config: EtaConfig | None = None,
        travel_times: TravelTimeModel | None = None,
        error_bands: ErrorBands | None = None,
    ) -> None:
        self.dest_lat = dest_lat
        self.dest_lon = dest_lon
        self.config = config or EtaConfig()
        # With a learned model the raw ETA blends the fleet's time for the distance left
        # with distance / this technician's speed (``learned_weight``); without, the latter.
        self.travel_times = travel_times
        # With learned error bands the range is the one that held most past arrivals at
        # this ETA; without (or before they have enough trips), the fixed-width band.
        self.error_bands = error_bands
        self.margin_m = 0.0  # route metres inside the fence: the ETA is to its edge
        self.state = "moving"  # of the latest estimate: "moving" or "stopped"
        self.travelled_m = 0.0  # distance driven since the first fix (jitter excluded)
        self._last: Fix | None = None  # last accepted fix
        self._anchor: Fix | None = None  # last point travel was counted to
        self._rejected = 0
        self._route_m: float | None = None  # route distance from the last counted position
        self._departed: float | None = None  # driving clock when the technician first moved
        self._moved_t: float | None = None  # last fix that counted travel
        self._skipped_s = 0.0  # stall time taken off the driving clock
        # (driving clock, travelled_m) at accepted fixes since departure, over the window.
        self._history: deque[tuple[float, float]] = deque()
        self._arrival: float | None = None  # smoothed arrival time
        self._estimate_t = 0.0  # time of the fix behind the current estimate
        self._eta: Eta | None = None
        self._prior_share = 1.0

    @property
    def last(self) -> Eta | None:
        """The latest estimate, as of the fix it was made at (None before the first fix)."""
        return self._eta

    def update(self, fix: Fix, route_distance_m: float, margin_m: float | None = None) -> Eta:
        """Take one fix and the remaining route distance from it; return the new estimate.

        ``margin_m``: how much of that route lies inside the fence; the ETA is to the fence
        edge, where the arrival is stamped (kept from the last call if not given).
        Stale fixes (not newer than the last accepted one) change nothing; outliers are
        ignored and answered with the previous estimate counted down to ``fix.t``.
        """
        if not math.isfinite(route_distance_m):
            raise ValueError(f"route distance must be finite, got {route_distance_m}")
        if margin_m is not None and math.isfinite(margin_m):
            self.margin_m = max(0.0, margin_m)
        last = self._last
        if last is not None and self._eta is not None:
            if fix.t <= last.t:
                return self._eta
            if self._is_outlier(last, fix):
                self._rejected += 1
                if self._rejected < self.config.outlier_reset_count:
                    return self._count_down(fix.t)
                # Several "outliers" in a row agree with each other: the old position was
                # the odd one (or the phone came back from a long gap). Restart from here.
                # The smoothed arrival was built on the wrong position: start it afresh too.
                self._last = self._anchor = fix
                self._history.append((self._clock(fix.t), self.travelled_m))
                self._route_m, self._arrival = route_distance_m, None
            elif self._advance(last, fix) > 0 or self._route_m is None:
                self._route_m = route_distance_m
            # else: standing still as far as the jitter filter can tell, so the distance to
            # go has not changed either; the new one differs only by the fix's noise, and
            # taking it would make the ETA wobble at every red light.
        else:
            self._last = self._anchor = fix
            self._history.append((fix.t, 0.0))
            self._route_m = route_distance_m
        self._rejected = 0
        return self._estimate(fix.t, max(0.0, self._route_m))

    def estimate_at(self, t: float) -> Eta | None:
        """The current estimate as seen at ``t`` (between fixes): it counts down 1 s/s."""
        return None if self._eta is None else self._count_down(t)

    # --- travel ---

    def _noise_m(self, fix: Fix) -> float:
        # Trust a reported accuracy when it says the fix is worse than usual (68 % radius,
        # so two fixes differ by up to ~2x), capped so a bad phone still registers driving.
        acc = fix.acc if fix.acc is not None and math.isfinite(fix.acc) else 0.0
        return max(self.config.min_step_m, min(2.0 * acc, 100.0))

    def _is_outlier(self, last: Fix, fix: Fix) -> bool:
        shift = distance_m(last.lat, last.lon, fix.lat, fix.lon) - self._noise_m(fix)
        return shift / (fix.t - last.t) > self.config.max_speed_mps

    def _doppler(self, fix: Fix) -> float | None:
        """The phone's own speed if usable: None if absent or absurd, 0 below walking noise."""
        speed = fix.speed
        if speed is None or not math.isfinite(speed) or not 0 <= speed <= self.config.max_speed_mps:
            return None
        return speed if speed >= self.config.min_moving_speed_mps else 0.0

    def _step_m(self, last: Fix, fix: Fix) -> float:
        """Distance travelled since the last fix, without counting GPS jitter as driving."""
        noise = self._noise_m(fix)
        v0, v1 = self._doppler(last), self._doppler(fix)
        if v0 is not None and v1 is not None:
            # Doppler speed is precise and reads 0 at a light, where positions wander; it is
            # capped by the displacement so a stale reading cannot invent distance.
            shift = distance_m(last.lat, last.lon, fix.lat, fix.lon)
            self._anchor = fix
            return min(0.5 * (v0 + v1) * (fix.t - last.t), shift + noise)
        anchor = self._anchor or last
        shift = distance_m(anchor.lat, anchor.lon, fix.lat, fix.lon)
        if shift < noise:
            return 0.0
        self._anchor = fix
        return shift

    def _advance(self, last: Fix, fix: Fix) -> float:
        """Count the travel from ``last`` to ``fix``; return the step (0: not moved)."""
        step = self._step_m(last, fix)
        self._last = fix
        self.travelled_m += step
        if step > 0:
            if self._departed is None:
                self._departed = self._clock(last.t)
            self._moved_t = fix.t
        elif self._moved_t is not None:
            # Standing longer than a long red light is an errand, a break or a blocked
            # street: how long it lasts says nothing about the speed once moving again. That
            # time is taken off the driving clock, so the speed estimate freezes and the
            # arrival slips one second per second (the honest answer) instead of the speed
            # collapsing toward zero and the ETA exploding.
            stall_start = self._moved_t + self.config.max_counted_stop_s
            self._skipped_s += max(0.0, fix.t - max(last.t, stall_start))
        if self._departed is None:
            # Waiting at the previous job is not slow driving: the observed speed window
            # opens when the technician first moves.
            self._history.clear()
        self._history.append((self._clock(fix.t), self.travelled_m))
        horizon = self._clock(fix.t) - self.config.speed_window_s
        while len(self._history) >= 2 and self._history[1][0] <= horizon:
            self._history.popleft()
        return step

    def _clock(self, t: float) -> float:
        """Driving time: ``t`` less the stalls not counted as part of driving."""
        return t - self._skipped_s

    def _speed(self) -> tuple[float, float]:
        """(travel speed, prior's share of it): the window's speed pooled with the prior.

        The prior's share shrinks with the time driven since departure, not with the window,
        so after a quarter of an hour the technician's own speed all but decides alone.
        """
        cfg = self.config
        (t0, d0), (t1, d1) = self._history[0], self._history[-1]
        driven_s = 0.0 if self._departed is None else t1 - self._departed
        share = cfg.prior_weight_s / (cfg.prior_weight_s + driven_s)
        observed = (d1 - d0) / (t1 - t0) if t1 > t0 else cfg.prior_speed_mps
        speed = share * cfg.prior_speed_mps + (1.0 - share) * observed
        return max(cfg.min_speed_mps, speed), share

    # --- estimate ---

    @property
    def to_go_m(self) -> float:
        """Route metres left to the fence edge, as of the latest estimate."""
        return max(0.0, (self._route_m or 0.0) - self.margin_m)

    def _estimate(self, t: float, route_m: float) -> Eta:
        cfg = self.config
        speed, self._prior_share = self._speed()
        to_go = max(0.0, route_m - self.margin_m)
        still = self._moved_t is not None and t - self._moved_t >= cfg.stopped_after_s
        self.state = "stopped" if still else "moving"
        if self.travel_times is None:
            raw_s = to_go / speed
        else:
            w = cfg.learned_weight
            learned = self.travel_times.expected_s(to_go, self.state)
            raw_s = w * learned + (1.0 - w) * to_go / speed
        if self._arrival is None:
            arrival = t + raw_s
        else:
            tau = min(cfg.smoothing_s, max(cfg.min_smoothing_s, cfg.smoothing_fraction * raw_s))
            alpha = 1.0 - math.exp(-max(0.0, t - self._estimate_t) / tau)
            arrival = self._arrival + alpha * (t + raw_s - self._arrival)
        lowest, highest = t + cfg.floor_fraction * raw_s, t + cfg.ceiling_fraction * raw_s
        arrival = min(max(arrival, lowest), highest)
        self._arrival, self._estimate_t = arrival, t
        self._eta = self._make(t, arrival, route_m, speed)
        return self._eta

    def _count_down(self, t: float) -> Eta:
        assert self._eta is not None and self._arrival is not None
        return self._make(t, self._arrival, self._eta.distance_m, self._eta.speed_mps)

    def _make(self, t: float, arrival: float, route_m: float, speed: float) -> Eta:
        cfg = self.config
        seconds = max(0.0, arrival - t)
        learned = None if self.error_bands is None else self.error_bands.band(seconds)
        if learned is not None:
            # The range always holds the ETA itself, even where the fleet ran early or late.
            low, high = min(learned[0], seconds), max(learned[1], seconds)
        else:
            widen = cfg.band_prior * self._prior_share
            low = max(0.0, seconds * (1.0 - cfg.band_low - widen) - cfg.band_margin_s)
            high = seconds * (1.0 + cfg.band_high + widen) + cfg.band_margin_s
        return Eta(seconds, arrival, route_m, low, high, speed)
