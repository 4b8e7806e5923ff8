"""The ETA's learned range: it holds the arrival as often as promised, and only once it knows."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from geofence.arrival import ArrivalTracker
from geofence.eta import EtaEstimator, StraightLineProvider
from geofence.eta_band import SAMPLE_EVERY_S, ErrorBands
from geofence.eta_models import CircuityModel
from geofence.fences import CircleFence
from geofence.geo import destination_point
from geofence.model import Fix

HOME = (52.52, 13.405)


def late_fleet(rng: random.Random, trips: int, bands: ErrorBands) -> None:
    """Trips whose arrival comes 0.9-1.5x the shown ETA after it was shown."""
    for _ in range(trips):
        arrived = 10_000.0
        samples = []
        for eta in (20.0, 50.0, 100.0, 200.0, 400.0, 800.0):
            actual = eta * rng.uniform(0.9, 1.5)
            samples.append((arrived - actual, eta))
        bands.observe(samples, arrived)


def test_no_range_until_enough_arrivals_have_been_seen():
    bands = ErrorBands(min_samples=40)
    late_fleet(random.Random(1), 39, bands)
    assert bands.band(200.0) is None
    late_fleet(random.Random(2), 1, bands)
    assert bands.band(200.0) is not None
    assert bands.band(4000.0) is None  # no trip ever showed an ETA near this


def test_the_range_holds_the_promised_share_of_new_arrivals():
    bands = ErrorBands(coverage=0.8)
    late_fleet(random.Random(3), 300, bands)
    rng = random.Random(4)
    for eta in (50.0, 200.0, 800.0):
        low, high = bands.band(eta)
        assert low >= 0.9 * eta - 5 and high <= 1.5 * eta + 5
        draws = [eta * rng.uniform(0.9, 1.5) for _ in range(4000)]
        inside = sum(low <= d <= high for d in draws) / len(draws)
        assert inside == pytest.approx(0.8, abs=0.06), eta
    # A late fleet: the range sits mostly above the ETA.
    low, high = bands.band(200.0)
    assert high - 200.0 > 2 * (200.0 - low)


def test_the_range_does_not_jump_where_the_eta_crosses_a_band_edge():
    bands = ErrorBands()
    late_fleet(random.Random(5), 300, bands)
    for edge in (60.0, 135.0, 300.0, 675.0):
        below, above = bands.band(edge - 0.01), bands.band(edge + 0.01)
        assert below[0] == pytest.approx(above[0], abs=0.5)
        assert below[1] == pytest.approx(above[1], abs=0.5)


def test_samples_after_the_arrival_or_with_negative_etas_are_not_learned():
    bands = ErrorBands()
    assert bands.observe([(100.0, 50.0), (200.0, 10.0), (50.0, -1.0)], arrived_t=150.0) == 1


def test_a_saved_model_comes_back_the_same_and_garbage_is_refused():
    bands = ErrorBands(coverage=0.7)
    late_fleet(random.Random(6), 50, bands)
    again = ErrorBands.from_dict(bands.to_dict())
    assert again.to_dict() == bands.to_dict()
    assert again.band(300.0) == bands.band(300.0)
    for bad in ({}, {"version": 2}, {"version": 1, "coverage": 0.8}):
        with pytest.raises(ValueError):
            ErrorBands.from_dict(bad)
    with pytest.raises(ValueError, match="coverage"):
        ErrorBands(coverage=1.0)


def drive_in(estimator: EtaEstimator, seconds: int = 300) -> list:
    """A technician 3 km out driving straight at the door at 10 m/s."""
    start = destination_point(*HOME, 90.0, 3000.0)
    etas = []
    for k in range(seconds):
        lat, lon = destination_point(*start, 270.0, 10.0 * k)
        fix = Fix(t=1000.0 + k, lat=lat, lon=lon, acc=5.0, speed=10.0)
        etas.append(estimator.update(fix, 3000.0 - 10.0 * k))
    return etas


def test_the_estimator_shows_the_learned_range_once_there_is_one():
    fixed = drive_in(EtaEstimator(*HOME))[150]
    bands = ErrorBands()
    late_fleet(random.Random(7), 300, bands)
    learned = drive_in(EtaEstimator(*HOME, error_bands=bands))[150]
    assert learned.seconds == fixed.seconds  # the range changes, not the ETA
    assert (learned.low_s, learned.high_s) != (fixed.low_s, fixed.high_s)
    low, high = bands.band(learned.seconds)
    assert learned.low_s == pytest.approx(min(low, learned.seconds))
    assert learned.high_s == pytest.approx(max(high, learned.seconds))
    assert learned.low_s <= learned.seconds <= learned.high_s


def test_the_tracker_samples_the_shown_eta_every_30_seconds():
    bands = ErrorBands()
    tracker = ArrivalTracker(
        *HOME, CircleFence(*HOME, 75.0), StraightLineProvider(CircuityModel()), error_bands=bands
    )
    start = destination_point(*HOME, 90.0, 1500.0)
    summary = None
    t = 1000.0
    for k in range(600):  # 150 s driving, then parked in the van: the long dwell
        along = min(10.0 * k, 1500.0)
        lat, lon = destination_point(*start, 270.0, along)
        update = tracker.update(Fix(t=t + k, lat=lat, lon=lon, acc=5.0, speed=None))
        summary = summary or update.trip
    assert summary is not None and summary.arrived_t is not None
    times = [t for t, _ in summary.eta_samples]
    assert all(b - a >= SAMPLE_EVERY_S for a, b in pairwise(times))
    # Shown until the check-in was decided; learned only up to the arrival it stamped.
    before = [t for t in times if t <= summary.arrived_t]
    assert len(before) >= 4 and bands.observe(summary.eta_samples, summary.arrived_t) == len(before)
