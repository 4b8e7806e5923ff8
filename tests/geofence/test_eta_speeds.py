"""The speed model by area and hour: cells, hours, shrinkage, merging, and its use by the ETA."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from geofence.arrival import TRACK_STEP_M, ArrivalTracker
from geofence.eta import EtaEstimator, StraightLineProvider
from geofence.eta_models import CircuityModel
from geofence.eta_speeds import SpeedModel, TrackPoint
from geofence.fences import CircleFence
from geofence.geo import bearing_deg, destination_point, distance_m
from geofence.model import Fix

# 2023-11-14 22:13:20 UTC; HOUR_0 is the start of the next day (UTC).
T0 = 1_700_000_000.0
HOUR_0 = 1_700_006_400.0
HOME = (52.52, 13.405)


def hour_t(hour: int, minute: float = 0.0) -> float:
    return HOUR_0 + hour * 3600.0 + minute * 60.0


def straight_track(
    start: tuple[float, float],
    bearing: float,
    metres: float,
    speed: float,
    t0: float,
    step_m: float = 250.0,
) -> list[TrackPoint]:
    """Points every ``step_m`` along a straight line driven at a constant speed."""
    n = int(metres // step_m)
    points = []
    for i in range(n + 1):
        lat, lon = destination_point(*start, bearing, i * step_m)
        t = t0 + i * step_m / speed
        points.append(TrackPoint(t, lat, lon, i * step_m, t))
    return points


def field_sums(counters: dict[str, float], kind: str) -> float:
    return sum(value for name, value in counters.items() if name.endswith(f"|{kind}"))


# --- keys -------------------------------------------------------------------------------


def test_hour_is_the_local_hour_of_day():
    utc = SpeedModel()
    assert [utc.hour(hour_t(h, 30)) for h in (0, 7, 23)] == [0, 7, 23]
    assert utc.hour(hour_t(24)) == 0  # the next day
    berlin = SpeedModel(utc_offset_s=3600.0)
    assert berlin.hour(hour_t(23, 30)) == 0 and berlin.hour(hour_t(7)) == 8
    new_york = SpeedModel(utc_offset_s=-5 * 3600.0)
    assert new_york.hour(hour_t(2)) == 21


def test_cells_are_about_the_cell_size_apart():
    model = SpeedModel(cell_m=1500.0)
    here = model.cell(*HOME)
    assert model.cell(*destination_point(*HOME, 45.0, 100.0)) in {
        here,
        model.cell(*destination_point(*HOME, 45.0, 200.0)),
    }
    far_east = destination_point(*HOME, 90.0, 3100.0)
    far_north = destination_point(*HOME, 0.0, 3100.0)
    assert len({here, model.cell(*far_east), model.cell(*far_north)}) == 3


# --- learning ---------------------------------------------------------------------------


def test_a_fresh_model_answers_the_prior_everywhere():
    model = SpeedModel(prior_speed_mps=7.0)
    assert model.speed_mps(*HOME, T0) == pytest.approx(7.0)
    far = destination_point(*HOME, 30.0, 9000.0)
    assert model.speed_along(*far, *HOME, T0) == pytest.approx(7.0)
    assert model.counters() == {} and model.trips == 0


def test_tally_puts_segments_in_the_cell_of_their_midpoint_and_counts_a_trip_once_per_cell():
    model = SpeedModel()
    track = straight_track(HOME, 90.0, 4000.0, 10.0, hour_t(8))
    tally = model.tally(track)
    assert model.counters() == {}  # a tally teaches nothing by itself
    cells = {name.split("|")[0] for name in tally}
    expected = {model.cell((a.lat + b.lat) / 2, (a.lon + b.lon) / 2) for a, b in pairwise(track)}
    assert cells == expected and len(cells) >= 3
    assert {name.split("|")[1] for name in tally} == {"8"}
    assert field_sums(tally, "m") == pytest.approx(4000.0)
    assert field_sums(tally, "s") == pytest.approx(400.0)
    assert field_sums(tally, "n") == len(cells)  # one trip per cell, not per segment


def test_a_segment_goes_to_the_hour_it_was_driven_in():
    model = SpeedModel()
    track = straight_track(HOME, 0.0, 1000.0, 5.0, hour_t(8, 59))  # 200 s across 9:00
    hours = {name.split("|")[1] for name in model.tally(track)}
    assert hours == {"8", "9"}


def test_absurd_segments_are_not_learned():
    model = SpeedModel()
    a = TrackPoint(T0, *HOME, 0.0, T0)
    b_lat, b_lon = destination_point(*HOME, 0.0, 300.0)
    assert model.tally([a, TrackPoint(T0 + 2, b_lat, b_lon, 300.0, T0 + 2)]) == {}  # 150 m/s
    assert model.tally([a, TrackPoint(T0 + 30, b_lat, b_lon, 300.0, T0)]) == {}  # no time
    assert model.tally([a, TrackPoint(T0 + 30, b_lat, b_lon, 0.0, T0 + 30)]) == {}  # no metres
    assert model.tally([a]) == {}


def learn(model: SpeedModel, track: list[TrackPoint]) -> None:
    model.add(model.tally(track))


def test_a_cell_and_hour_seen_by_many_trips_answers_its_own_speed():
    model = SpeedModel(prior_speed_mps=7.0)
    for day in range(60):
        learn(model, straight_track(HOME, 0.0, 1000.0, 3.0, hour_t(8) + 86400.0 * day))
    assert model.speed_mps(*HOME, hour_t(8, 10)) == pytest.approx(3.0, rel=0.05)


def test_one_trip_moves_a_fresh_cell_only_part_of_the_way():
    model = SpeedModel(prior_speed_mps=7.0, prior_trips=3.0, trip_evidence_m=500.0)
    learn(model, straight_track(HOME, 0.0, 500.0, 3.5, hour_t(8)))  # one cell, full evidence
    assert model.trips == 1
    # global: (1 x 1/3.5 + 3 x 1/7) / 4; the hour and the cell are that one trip too, each
    # shrunk toward the global pace; the cell at the hour toward cell x hour / global.
    g = (1 / 3.5 + 3 / 7) / 4
    h = c = (1 / 3.5 + 3 * g) / 4
    fine = (1 / 3.5 + 3 * (c * h / g)) / 4
    assert model.pace_s_per_m(model.cell(*HOME), 8) == pytest.approx(fine)
    assert 3.5 < model.speed_mps(*HOME, hour_t(8)) < 7.0


def test_a_trip_that_clips_a_corner_of_a_cell_counts_as_less_evidence():
    full, clipped = SpeedModel(), SpeedModel()
    learn(full, straight_track(HOME, 0.0, 500.0, 3.5, hour_t(8)))
    learn(clipped, straight_track(HOME, 0.0, 100.0, 3.5, hour_t(8), step_m=100.0))
    # The same pace, but 100 m of it is a fifth of a trip's evidence: closer to the prior.
    assert clipped.speed_mps(*HOME, hour_t(8)) > full.speed_mps(*HOME, hour_t(8))


def test_an_hour_seen_elsewhere_slows_a_cell_seen_only_at_other_hours():
    """The rush hour the rest of the city shows applies to a cell seen only at noon."""
    model = SpeedModel(prior_speed_mps=7.0)
    elsewhere = destination_point(*HOME, 0.0, 6000.0)
    for day in range(20):
        day_s = 86400.0 * day
        learn(model, straight_track(HOME, 90.0, 1000.0, 10.0, hour_t(12) + day_s))
        learn(model, straight_track(elsewhere, 90.0, 1000.0, 10.0, hour_t(12) + day_s))
        learn(model, straight_track(elsewhere, 90.0, 1000.0, 4.0, hour_t(8) + day_s))
    noon, rush = model.speed_mps(*HOME, hour_t(12)), model.speed_mps(*HOME, hour_t(8))
    assert noon == pytest.approx(10.0, rel=0.1)
    assert rush < 0.75 * noon
    # A cell nobody drove: the hour's pace over all cells.
    nowhere = destination_point(*HOME, 180.0, 20000.0)
    assert model.speed_mps(*nowhere, hour_t(8)) < model.speed_mps(*nowhere, hour_t(12))


def test_the_line_to_the_door_weighs_each_cell_by_the_time_it_costs():
    model = SpeedModel(prior_speed_mps=7.0, cell_m=1500.0)
    start = destination_point(*HOME, 90.0, 6000.0)
    for day in range(200):
        t = hour_t(8) + 86400.0 * day
        learn(model, straight_track(start, 270.0, 3000.0, 10.0, t))  # the first half: fast
        middle = destination_point(*HOME, 90.0, 3000.0)
        learn(model, straight_track(middle, 270.0, 3000.0, 2.0, t))  # the second: slow
    speed = model.speed_along(*start, *HOME, hour_t(8))
    # 3 km at 10 m/s and 3 km at 2 m/s take 1,800 s: 3.3 m/s, not the mean speed of 6.
    assert speed == pytest.approx(6000.0 / (300.0 + 1500.0), rel=0.15)


# --- merging ----------------------------------------------------------------------------


def trips() -> list[list[TrackPoint]]:
    north = destination_point(*HOME, 0.0, 4000.0)
    return [
        straight_track(HOME, 90.0, 3000.0, 9.0, hour_t(8)),
        straight_track(north, 180.0, 4000.0, 5.0, hour_t(17, 40)),
        straight_track(HOME, 90.0, 2000.0, 12.0, hour_t(8) + 86400.0),
    ]


def test_merging_two_hubs_counters_equals_learning_every_trip_in_one_model():
    first, second, both = SpeedModel(), SpeedModel(), SpeedModel()
    a, b, c = trips()
    learn(first, a)
    learn(first, c)
    learn(second, b)
    for track in (b, c, a):  # in another order
        learn(both, track)
    merged: dict[str, float] = {}
    for model in (first, second):
        for name, value in model.counters().items():
            merged[name] = merged.get(name, 0.0) + value
    # What each hub reads back from the store: the sums.
    reread = SpeedModel()
    reread.replace(merged)
    assert reread.counters() == pytest.approx(both.counters())
    for cell_point in (HOME, destination_point(*HOME, 0.0, 2000.0)):
        for t in (hour_t(8), hour_t(17, 50), hour_t(3)):
            assert reread.speed_mps(*cell_point, t) == pytest.approx(both.speed_mps(*cell_point, t))


def test_replace_forgets_what_was_there_and_skips_fields_it_does_not_know():
    model = SpeedModel()
    learn(model, trips()[0])
    totals = model.counters()
    model.add(model.tally(trips()[1]))
    taken = model.replace({**totals, "0:0|8|x": 5.0, "0:0|25|m": 5.0, "junk": 1.0, "0:0|8": 1.0})
    assert taken == len(totals)
    assert model.counters() == pytest.approx(totals)


def test_a_snapshot_round_trips_and_a_bad_one_is_refused():
    model = SpeedModel(prior_speed_mps=6.0, cell_m=1000.0, utc_offset_s=3600.0)
    learn(model, trips()[0])
    again = SpeedModel.from_dict(model.to_dict())
    assert again.to_dict() == model.to_dict()
    assert again.speed_mps(*HOME, hour_t(7)) == model.speed_mps(*HOME, hour_t(7))
    for bad in ({}, {"version": 2}, {"version": 1, "prior_speed_mps": 7.0}):
        with pytest.raises(ValueError):
            SpeedModel.from_dict(bad)


# --- in the estimator and the tracker ------------------------------------------------------


def approach(start: tuple[float, float], t0: float, speed: float, stop_s: float = 0.0):
    """1 Hz fixes on the straight line from ``start`` to HOME; a stop half-way."""
    total = distance_m(*start, *HOME)
    bearing = bearing_deg(*start, *HOME)
    fixes, t, s = [], t0, 0.0
    halted = False
    while s < total:
        fixes.append(Fix(t, *destination_point(*start, bearing, s), acc=8.0))
        if not halted and s >= total / 2 and stop_s:
            halted = True
            for i in range(1, int(stop_s)):
                fixes.append(Fix(t + i, *destination_point(*start, bearing, s), acc=8.0))
            t += stop_s
        t += 1.0
        s += speed
    return fixes


def run_estimator(fixes: list[Fix], speeds: SpeedModel | None) -> list[float]:
    estimator = EtaEstimator(*HOME, speeds=speeds)
    return [estimator.update(f, distance_m(f.lat, f.lon, *HOME)).seconds for f in fixes]


def test_an_estimator_with_a_fresh_model_is_the_estimator_without_one():
    fixes = approach(destination_point(*HOME, 60.0, 5000.0), hour_t(8), 9.0)
    assert run_estimator(fixes, SpeedModel()) == run_estimator(fixes, None)


def test_learned_slow_streets_lengthen_the_eta_before_the_technician_has_driven_them():
    start = destination_point(*HOME, 60.0, 5000.0)
    model = SpeedModel()
    for day in range(30):
        line = straight_track(start, 240.0, 5000.0, 3.0, hour_t(8) + 86400.0 * day)
        learn(model, line)
    fixes = approach(start, hour_t(8) + 86400.0 * 40, 9.0)
    fixed, learned = run_estimator(fixes[:5], None), run_estimator(fixes[:5], model)
    # 5 km: ~700 s at the 7 m/s prior, ~1,700 s at the learned 3 m/s of these streets.
    assert learned[0] > 2.0 * fixed[0]
    # ...and in the hour it was learned: with the nights seen fast elsewhere, the same
    # streets at night are expected faster than in the morning.
    elsewhere = destination_point(*HOME, 180.0, 8000.0)
    for day in range(30):
        learn(model, straight_track(elsewhere, 90.0, 3000.0, 12.0, hour_t(2) + 86400.0 * day))
        learn(model, straight_track(elsewhere, 90.0, 3000.0, 6.0, hour_t(8) + 86400.0 * day))
    night = approach(start, hour_t(2) + 86400.0 * 40, 9.0)
    assert run_estimator(night[:5], model)[0] < 0.7 * run_estimator(fixes[:5], model)[0]


def test_a_completed_approach_carries_its_track_without_the_long_stop():
    start = destination_point(*HOME, 60.0, 3000.0)
    fixes = approach(start, hour_t(8), 10.0, stop_s=300.0)
    fixes += [Fix(fixes[-1].t + i, *HOME, acc=30.0) for i in range(1, 300, 5)]  # indoors
    model = SpeedModel()
    tracker = ArrivalTracker(
        *HOME, CircleFence(*HOME, 75.0), StraightLineProvider(CircuityModel()), speeds=model
    )
    trips = [u.trip for u in map(tracker.update, fixes) if u.trip is not None]
    assert len(trips) == 1
    track = trips[0].track
    assert len(track) >= 8
    assert all(b.travelled_m - a.travelled_m >= TRACK_STEP_M for a, b in pairwise(track))
    # The 300 s stop is longer than a long light: beyond its first 90 s (a long red light,
    # part of driving) it is not slow streets, so the driving clock skips the rest.
    tally = model.tally(track)
    driven_s = (field_sums(tally, "m") / 10.0) + 90.0
    assert field_sums(tally, "m") / field_sums(tally, "s") == pytest.approx(
        field_sums(tally, "m") / driven_s, rel=0.05
    )
    wall = track[-1].t - track[0].t
    assert wall - (track[-1].driving_s - track[0].driving_s) == pytest.approx(210.0, abs=5.0)
    # No model, no track: the tracker records nothing it is not asked to.
    plain = ArrivalTracker(*HOME, CircleFence(*HOME, 75.0), StraightLineProvider(CircuityModel()))
    trips = [u.trip for u in map(plain.update, fixes) if u.trip is not None]
    assert trips[0].track == ()


def test_the_fresh_model_speed_is_finite_for_a_fix_at_the_door():
    model = SpeedModel()
    assert math.isfinite(model.speed_along(*HOME, *HOME, T0))
