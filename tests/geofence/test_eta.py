"""The ETA estimator on seeded synthetic drives: honest, smooth, and better than the baseline.

Drives follow a staircase of streets (legs at right angles, so the road is ~1.3-1.4x the
straight line), stop at traffic lights every ~500 m for 30-60 s, and report fixes every
5 s with 5-15 m of GPS jitter. Everything is seeded: the same drive every run.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from dataclasses import dataclass, field, replace

import pytest

from geofence.eta import (
    Eta,
    EtaConfig,
    EtaEstimator,
    RouteProvider,
    StraightLineProvider,
    baseline_eta_s,
)
from geofence.eta_models import CircuityModel
from geofence.geo import bearing_deg, destination_point, distance_m
from geofence.model import Fix

T0 = 1_700_000_000.0
BERLIN = (52.50, 13.40)
MUNICH = (48.14, 11.58)
SEEDS = range(6)


@dataclass
class Drive:
    fixes: list[Fix]
    remaining_m: list[float]  # true road distance left at each fix (what OSRM would say)
    stopped: list[bool]  # standing at a light when the fix was taken
    arrival_t: float
    dest: tuple[float, float]
    length_m: float
    stops: list[tuple[float, float]] = field(default_factory=list)  # (start, end) times

    def truth(self, fix: Fix) -> float:
        return self.arrival_t - fix.t


def _streets(rng: random.Random, start: tuple[float, float], length_m: float) -> list:
    """A staircase of legs 300-1000 m long, alternating between two perpendicular bearings."""
    heading = rng.uniform(0, 360)
    points = [start]
    total = 0.0
    while total < length_m:
        leg = min(rng.uniform(300, 1000), length_m - total)
        bearing = heading + (90 if len(points) % 2 == 0 else 0)
        points.append(destination_point(*points[-1], bearing, leg))
        total += leg
    return points


def _point_at(points: list, s: float) -> tuple[float, float]:
    for a, b in itertools.pairwise(points):
        leg = distance_m(*a, *b)
        if s <= leg:
            return destination_point(*a, bearing_deg(*a, *b), s)
        s -= leg
    return points[-1]


def make_drive(
    seed: int,
    *,
    length_m: float = 6000.0,
    interval_s: float = 5.0,
    doppler: bool = False,
    light_every_m: float = 500.0,
    stop_s: tuple[float, float] = (30.0, 60.0),
    red: float = 1.0,
    cruise: tuple[float, float] = (9.0, 13.0),
    jitter: tuple[float, float] = (5.0, 15.0),
    forced: dict[int, float] | None = None,
    start: tuple[float, float] = BERLIN,
) -> Drive:
    """Simulate a drive second by second; ``forced`` sets the stop at light number n (s)."""
    rng = random.Random(seed)
    points = _streets(rng, start, length_m)
    t, s, speed = T0, 0.0, rng.uniform(*cruise)
    next_light, light = light_every_m * rng.uniform(0.8, 1.2), 0
    stopped_until: float | None = None
    drive = Drive([], [], [], 0.0, points[-1], length_m)
    next_fix = T0
    while s < length_m:
        if t >= next_fix:
            lat, lon = _point_at(points, s)
            lat, lon = destination_point(lat, lon, rng.uniform(0, 360), rng.uniform(*jitter))
            moving = 0.0 if stopped_until is not None else speed
            reported = max(0.0, moving + rng.gauss(0, 0.4)) if doppler else None
            drive.fixes.append(Fix(t=t, lat=lat, lon=lon, speed=reported))
            drive.remaining_m.append(length_m - s)
            drive.stopped.append(stopped_until is not None)
            next_fix += interval_s
        t += 1.0
        if stopped_until is not None:
            if t >= stopped_until:
                stopped_until, speed = None, rng.uniform(*cruise)
            continue
        if s + speed >= next_light and next_light < length_m:
            wait = rng.uniform(*stop_s) if rng.random() < red else 0.0
            wait = (forced or {}).get(light, wait)
            if wait > 0:
                s, stopped_until = next_light, t + wait
                drive.stops.append((t, t + wait))
            else:
                s += speed
            next_light += light_every_m * rng.uniform(0.8, 1.2)
            light += 1
            continue
        s += speed
    drive.arrival_t = t - (s - length_m) / speed
    return drive


def run(
    drive: Drive, provider: RouteProvider | None = None, config: EtaConfig | None = None
) -> list[Eta]:
    """Feed every fix; the route distance is the true one unless a provider is given."""
    estimator = EtaEstimator(*drive.dest, config)
    etas = []
    for fix, remaining in zip(drive.fixes, drive.remaining_m, strict=True):
        if provider is not None:
            remaining = provider.route_distance_m(fix.lat, fix.lon, *drive.dest)
        etas.append(estimator.update(fix, remaining))
    return etas


def straight_line() -> StraightLineProvider:
    return StraightLineProvider(CircuityModel())


def reversals(values: list[float], hysteresis_s: float = 1.0) -> int:
    """Direction changes a viewer could see: moves of under a second back are not counted."""
    count, rising, extreme = 0, False, values[0]
    for value in values[1:]:
        if (value > extreme) == rising:
            extreme = value  # going on the same way: follow the extreme
        elif abs(value - extreme) >= hysteresis_s:
            count, rising, extreme = count + 1, not rising, value
    return count


def mean_abs_error(drive: Drive, predictions: list[float]) -> float:
    return statistics.mean(
        abs(p - drive.truth(f)) for p, f in zip(predictions, drive.fixes, strict=True)
    )


# --- the estimate over a drive ---


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("provider", [None, "straight"])
def test_eta_counts_down_to_zero_as_the_technician_arrives(seed, provider):
    drive = make_drive(seed)
    etas = run(drive, straight_line() if provider else None)
    n = len(etas)
    assert etas[0].seconds > 0.6 * drive.truth(drive.fixes[0])
    assert etas[n // 4].seconds > etas[n // 2].seconds > etas[3 * n // 4].seconds
    assert etas[-1].seconds < 20.0
    assert all(e.seconds >= 0 and e.low_s <= e.seconds <= e.high_s for e in etas)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("interval_s", [1.0, 5.0])
def test_eta_does_not_oscillate(seed, interval_s):
    drive = make_drive(seed, interval_s=interval_s)
    seconds = [e.seconds for e in run(drive, straight_line())]
    # Down while driving; at most one turn up at a light and one back down after it.
    assert reversals(seconds) <= 2 * len(drive.stops) + 2
    # Away from lights (none in the last two minutes) it never goes up, even by a second.
    for i in range(1, len(seconds)):
        t = drive.fixes[i].t
        if not any(start - 5 <= t <= end + 120 for start, end in drive.stops):
            assert seconds[i] - seconds[i - 1] <= 1.0, f"jumped up at fix {i}"


def test_red_light_does_not_make_the_eta_explode():
    # An otherwise green drive: the 45 s red light at the fourth crossing is all surprise.
    drive = make_drive(1, red=0.0, forced={3: 45.0})
    (start, end), *_ = drive.stops
    etas = run(drive, straight_line())
    before = [e for e, f in zip(etas, drive.fixes, strict=True) if f.t < start][-1]
    during = [e for e, f in zip(etas, drive.fixes, strict=True) if start <= f.t <= end + 5]
    assert len(during) >= 9
    assert max(e.seconds for e in during) <= 1.5 * before.seconds
    # ... nor does it pretend the car is still moving: the arrival time slips a little.
    assert during[-1].arrival_t > before.arrival_t


def test_long_stop_eventually_pushes_the_arrival_back():
    drive = make_drive(2, red=0.0, forced={2: 600.0})
    (start, end), *_ = drive.stops
    etas = run(drive, straight_line())
    before = [e for e, f in zip(etas, drive.fixes, strict=True) if f.t < start][-1]
    stuck = [e for e, f in zip(etas, drive.fixes, strict=True) if f.t <= end][-1]
    # Ten minutes without moving push the arrival back by about ten minutes: the countdown
    # did not run to zero meanwhile, nor did the driving time still ahead explode.
    assert 500 < stuck.arrival_t - before.arrival_t < 800
    assert 0.8 * before.seconds < stuck.seconds < 1.5 * before.seconds


def test_outlier_fix_is_ignored():
    drive = make_drive(3)
    clean = run(drive, straight_line())
    i = len(drive.fixes) // 3
    good = drive.fixes[i]
    jump = replace(good, t=good.t + 1.0, lat=good.lat + 0.03)  # 3.3 km in one second
    estimator = EtaEstimator(*drive.dest)
    provider = straight_line()
    for k, fix in enumerate(drive.fixes):
        eta = estimator.update(fix, provider.route_distance_m(fix.lat, fix.lon, *drive.dest))
        if k == i:
            during = estimator.update(jump, 10.0)
            assert during.arrival_t == eta.arrival_t
            assert during.seconds == pytest.approx(eta.seconds - 1.0)
        assert eta == clean[k]


def test_a_bad_first_fix_is_abandoned_after_a_few_consistent_ones():
    dest = destination_point(*BERLIN, 90, 3000)
    estimator = EtaEstimator(*dest)
    far = destination_point(*BERLIN, 270, 20_000)
    estimator.update(Fix(T0, *far), 29_000)
    etas = [
        estimator.update(Fix(T0 + 5 * k, *destination_point(*BERLIN, 90, 50 * k)), 3900 - 65 * k)
        for k in range(1, 6)
    ]
    # The first two are outliers against the bad fix; from the third on, it is the bad one.
    assert etas[0].distance_m == etas[1].distance_m == 29_000
    assert etas[-1].distance_m == pytest.approx(3900 - 65 * 5)
    assert etas[-1].seconds < 3900 / EtaConfig().prior_speed_mps


def test_band_contains_the_truth_and_narrows_near_arrival():
    coverage = []
    for seed in SEEDS:
        drive = make_drive(seed)
        etas = run(drive, straight_line())
        coverage += [
            e.low_s <= drive.truth(f) <= e.high_s for e, f in zip(etas, drive.fixes, strict=True)
        ]
        n = len(etas)
        early = statistics.mean(e.high_s - e.low_s for e in etas[: n // 10])
        late = statistics.mean(e.high_s - e.low_s for e in etas[-n // 10 :])
        assert late < early / 4
    assert statistics.mean(coverage) >= 0.9


def test_mean_absolute_error_is_well_below_the_baseline():
    ratios = []
    for seed in SEEDS:
        drive = make_drive(seed)
        baseline = [baseline_eta_s(f.lat, f.lon, *drive.dest) for f in drive.fixes]
        for provider in (None, straight_line()):
            ours = [e.seconds for e in run(drive, provider)]
            ratios.append(mean_abs_error(drive, ours) / mean_abs_error(drive, baseline))
    assert max(ratios) < 0.6
    assert statistics.mean(ratios) < 0.45


@pytest.mark.parametrize("seed", SEEDS)
def test_phone_speed_and_positions_measure_the_distance_driven(seed):
    for doppler in (False, True):
        drive = make_drive(seed, doppler=doppler)
        estimator = EtaEstimator(*drive.dest)
        for fix, remaining in zip(drive.fixes, drive.remaining_m, strict=True):
            estimator.update(fix, remaining)
        # Jitter at 12 lights (~100 fixes standing still) is not counted as driving.
        assert estimator.travelled_m == pytest.approx(drive.length_m, rel=0.1)


# --- time between fixes, waiting, bad input ---


def test_between_fixes_it_counts_down_one_second_per_second():
    drive = make_drive(0)
    estimator = EtaEstimator(*drive.dest)
    assert estimator.estimate_at(T0) is None
    for fix, remaining in zip(drive.fixes[:40], drive.remaining_m[:40], strict=True):
        eta = estimator.update(fix, remaining)
    later = estimator.estimate_at(eta.arrival_t - eta.seconds + 3.0)
    assert later is not None
    assert later.seconds == pytest.approx(eta.seconds - 3.0)
    assert later.arrival_t == eta.arrival_t
    assert later.high_s - later.low_s < eta.high_s - eta.low_s


def test_waiting_at_the_previous_job_uses_the_prior_speed():
    dest = destination_point(*BERLIN, 45, 4000)
    estimator = EtaEstimator(*dest)
    rng = random.Random(7)
    etas = []
    for k in range(90):  # 7.5 minutes parked, 5-15 m of jitter
        lat, lon = destination_point(*BERLIN, rng.uniform(0, 360), rng.uniform(5, 15))
        etas.append(estimator.update(Fix(T0 + 5 * k, lat, lon), 5400.0))
    prior = EtaConfig().prior_speed_mps
    assert estimator.travelled_m == 0.0
    assert all(e.speed_mps == prior for e in etas)
    # The smoothing lets the countdown run for a moment (as at a light), then it holds.
    assert all(e.seconds >= 0.9 * 5400.0 / prior for e in etas)
    assert max(e.seconds for e in etas[-20:]) - min(e.seconds for e in etas[-20:]) < 1.0


def test_stale_and_duplicate_fixes_change_nothing():
    estimator = EtaEstimator(*destination_point(*BERLIN, 0, 2000))
    first = estimator.update(Fix(T0 + 10, *BERLIN), 2600.0)
    assert estimator.update(Fix(T0 + 10, *BERLIN), 100.0) == first
    assert estimator.update(Fix(T0 + 5, *BERLIN), 100.0) == first


def test_route_distance_must_be_finite():
    estimator = EtaEstimator(*BERLIN)
    with pytest.raises(ValueError):
        estimator.update(Fix(T0, *MUNICH), math.nan)


def test_baseline_is_straight_line_at_constant_speed():
    there = destination_point(*BERLIN, 30, 1000)
    assert baseline_eta_s(*BERLIN, *there) == pytest.approx(1000 / 8.33)
    assert baseline_eta_s(*BERLIN, *there, speed_mps=10.0) == pytest.approx(100.0)


# --- route providers ---


def test_straight_line_provider_scales_by_the_destinations_circuity():
    model = CircuityModel()
    dest = destination_point(*BERLIN, 60, 2000)
    for _ in range(30):
        model.observe(*BERLIN, *dest, 2000 * 1.6)
    provider = StraightLineProvider(model)
    start = destination_point(*BERLIN, 200, 1500)
    expected = distance_m(*start, *BERLIN) * model.factor(*BERLIN)
    assert provider.route_distance_m(*start, *BERLIN) == pytest.approx(expected)
    assert model.factor(*BERLIN) > 1.5
