"""Live ETA to the customer's door: remaining route distance over a travel speed, smoothed.

The customer watches this number, so it must count down like a clock and move only for a
reason. Three parts, all pure (fixes and times in, estimates out; no I/O, no clock):

- Distance: the caller passes the remaining *route* distance for each fix. It comes from a
  ``RouteProvider``; the default, ``StraightLineProvider``, multiplies the straight line by
  a circuity factor (driven / straight distance) that ``CircuityModel``
  (``geofence/eta_models.py``) learns online from completed trips in the area, so no
  routing engine is needed. The hub may instead pass a routing engine's distance
  (``realtime/routing.py``).
- Speed: the technician's travel speed over the last few minutes *including stops*, pooled
  with a prior speed in proportion to the evidence. The prior is fixed, or, with a
  ``SpeedModel`` (``geofence/eta_speeds.py``), what the fleet drove along the way to the
  door at this hour of the day. Stops at lights are part of driving in
  a city; the ones just seen predict the ones ahead, so a red light nudges the ETA instead
  of making it explode as an instantaneous speed of zero would. A stop longer than a long
  light is not counted as driving at all: the arrival simply slips with it.
- Travel time (optional): ``TravelTimeModel`` (``eta_models.py`` too) learns from
  completed trips how long the fleet really took for a given distance left, moving or
  stopped, including what no speed explains (parking, sitting in the car, walking in).
  When given, the raw ETA is a blend of that and distance / speed. The ETA is to the fence
  edge, where the arrival is stamped: the caller passes how much of the route lies inside
  the fence (``margin_m``).
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
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from geofence.eta_band import ErrorBands
from geofence.eta_models import CircuityModel
from geofence.geo import distance_m
from geofence.model import Fix

if TYPE_CHECKING:
    from geofence.eta_models import TravelTimeModel
    from geofence.eta_speeds import SpeedModel

# The baseline the estimator is evaluated against: 30 km/h on the straight line.
BASELINE_SPEED_MPS = 8.33


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


def jitter_m(acc: float | None, min_step_m: float) -> float:
    """How far a fix may sit from the last counted point by GPS noise alone: ``min_step_m``,
    or twice a reported accuracy that says the fix is worse than usual (68 % radius, so two
    fixes differ by up to ~2x), capped at 100 m so a bad phone still registers driving.
    Shared by the ETA's "travelled" and the distance driven to a door (realtime/quotes.py)."""
    reported = acc if acc is not None and math.isfinite(acc) else 0.0
    return max(min_step_m, min(2.0 * reported, 100.0))


class EtaEstimator:
    """Smoothed ETA for one technician driving to one destination. Feed fixes in time order."""

    def __init__(
        self,
        dest_lat: float,
        dest_lon: float,
        config: EtaConfig | None = None,
        travel_times: TravelTimeModel | None = None,
        error_bands: ErrorBands | None = None,
        speeds: SpeedModel | None = None,
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
        # With learned speeds the prior is the fleet's speed toward the door at this hour;
        # without, ``config.prior_speed_mps``.
        self.speeds = speeds
        self._prior_speed = self.config.prior_speed_mps
        self._prior_at: tuple[float, float, int] | None = None  # (lat, lon, hour) it is for
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
        self._prior_speed = self._road_prior(fix)
        return self._estimate(fix.t, max(0.0, self._route_m))

    @property
    def last_fix(self) -> Fix | None:
        """The last accepted fix (an outlier is not)."""
        return self._last

    def driving_s(self, t: float) -> float:
        """The driving clock at ``t``: Unix time less the stops not counted as driving
        (longer than ``max_counted_stop_s``). What the speed model learns seconds on."""
        return self._clock(t)

    def estimate_at(self, t: float) -> Eta | None:
        """The current estimate as seen at ``t`` (between fixes): it counts down 1 s/s."""
        return None if self._eta is None else self._count_down(t)

    # --- travel ---

    def _noise_m(self, fix: Fix) -> float:
        return jitter_m(fix.acc, self.config.min_step_m)

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

    def _road_prior(self, fix: Fix) -> float:
        """The prior speed for the road from this fix to the door (see ``speeds``).

        Asked again only once the technician has moved a quarter of a cell or the hour has
        turned: the answer averages whole cells, so it changes no faster than that, and the
        hot path does not walk the line to the door at every fix.
        """
        speeds = self.speeds
        if speeds is None:
            return self.config.prior_speed_mps
        hour, at = speeds.hour(fix.t), self._prior_at
        if (
            at is not None
            and at[2] == hour
            and distance_m(at[0], at[1], fix.lat, fix.lon) < 0.25 * speeds.cell_m
        ):
            return self._prior_speed
        self._prior_at = (fix.lat, fix.lon, hour)
        return speeds.speed_along(fix.lat, fix.lon, self.dest_lat, self.dest_lon, fix.t)

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
        prior = self._prior_speed
        observed = (d1 - d0) / (t1 - t0) if t1 > t0 else prior
        speed = share * prior + (1.0 - share) * observed
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
