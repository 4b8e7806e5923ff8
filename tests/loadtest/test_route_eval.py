"""Road information for the ETA: simulated streets, learned travel times, routed replay."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from geofence.arrival import ArrivalTracker
from geofence.eta import EtaConfig, EtaEstimator, StraightLineProvider
from geofence.eta_models import CircuityModel, TravelTimeModel
from geofence.fences import CircleFence
from geofence.geo import LocalProjection, distance_m
from geofence.model import Fix
from loadtest.arrival.replay import replay
from loadtest.arrival.report import format_markdown
from loadtest.arrival.score import score
from loadtest.arrival.spec import TripSpec
from loadtest.roads import Road, RoadBook, road_entry
from loadtest.traces import generate_trip

DOOR = (52.52, 13.405)
T0 = 1_700_000_000.0


def plane(x: float, y: float) -> tuple[float, float]:
    """(lat, lon) of a point x m east, y m north of the door."""
    return LocalProjection(*DOOR).to_latlon(x, y)


@pytest.fixture
def l_road() -> Road:
    # 1000 m west then 500 m south of the door, driven east then north: 1500 m of road.
    return Road.from_latlon(*DOOR, [plane(-1000, -500), plane(0, -500), plane(0, 0)])


# --- roads --------------------------------------------------------------------------------


def test_on_the_route_the_distance_is_what_is_left_of_it(l_road):
    assert l_road.distance_m(*plane(-1000, -500)) == pytest.approx(1500, abs=2)
    assert l_road.distance_m(*plane(-400, -500)) == pytest.approx(900, abs=2)
    assert l_road.distance_m(*plane(0, -200)) == pytest.approx(200, abs=1)
    assert l_road.distance_m(*DOOR) == pytest.approx(0, abs=0.5)


def test_off_the_route_the_way_to_it_is_along_the_grid_not_a_beeline(l_road):
    # 100 m east and 100 m north of the corner's street: to the route along the grid.
    assert l_road.distance_m(*plane(-300, -400)) == pytest.approx(100 + 800, abs=3)
    # Past the end, beyond the door on its street and round the corner: 60 + 40 m.
    assert l_road.distance_m(*plane(60, 40)) == pytest.approx(100, abs=2)


def test_the_book_answers_by_destination_and_knows_only_its_routes(l_road):
    book = RoadBook([l_road])
    assert book.route_distance_m(*plane(-400, -500), *DOOR) == pytest.approx(900, abs=2)
    assert book.route_distance_m(*plane(-400, -500), DOOR[0] + 0.01, DOOR[1]) is None
    assert book.route_distance_m(*plane(-9000, -500), *DOOR) is None  # not on this map


def test_the_book_reads_the_roads_file_and_refuses_a_broken_one(l_road):
    entry = road_entry("a", {"lat": DOOR[0], "lon": DOOR[1]}, [plane(-1000, -500), DOOR])
    book = RoadBook.from_json(json.loads(json.dumps([entry])))
    assert book.route_distance_m(*plane(-1000, -500), *DOOR) == pytest.approx(1118, abs=3)
    with pytest.raises(ValueError, match="entry 0"):
        RoadBook.from_json([{"trip_id": "a", "destination": {"lat": 1}, "route": []}])
    with pytest.raises(ValueError):
        RoadBook.from_json({"not": "a list"})


@pytest.mark.parametrize("index", range(4))
def test_simulated_trips_come_with_the_route_a_navigation_app_would_give(index):
    trace = generate_trip(index, seed=3, kind="normal")
    truth = trace.truth
    road = Road.from_latlon(truth.dest_lat, truth.dest_lon, trace.route)
    first = trace.true_positions[0]
    assert distance_m(*trace.route[0], *first) < 1.0
    # The driven road is the navigation route plus where the car parks (<= 60 m + approach).
    assert abs(road.distance_m(*first) - truth.route_m) < 120
    assert road.distance_m(*first) > 1.15 * truth.straight_m
    # ... and the route ends in the street in front of the door (8-30 m from it).
    assert distance_m(*trace.route[-1], truth.dest_lat, truth.dest_lon) < 31


def test_the_route_does_not_change_the_trip():
    trace = generate_trip(2, seed=3)
    again = generate_trip(2, seed=3)
    assert trace == again and trace.route == again.route


# --- travel time model ---------------------------------------------------------------------


def test_a_fresh_travel_time_model_is_distance_over_the_prior_speed():
    model = TravelTimeModel(prior_speed_mps=7.0)
    for metres in (30.0, 100.0, 700.0, 5000.0, 20000.0):
        assert model.expected_s(metres) == pytest.approx(metres / 7.0, rel=0.02)
    # Within the first band's middle it stays put: the last metres are never free.
    assert model.expected_s(0.0) == model.expected_s(10.0) == pytest.approx(15 / 7.0)


def approach(arrived: float, pace_s_per_m: float, wait_s: float) -> list[tuple[float, float, str]]:
    """Samples of a trip: (t, metres left, state), at a given pace plus a wait at the door."""
    out = []
    for metres in (20000, 10000, 5000, 3000, 1500, 800, 400, 200, 100, 50, 20):
        out.append((arrived - wait_s - metres * pace_s_per_m, float(metres), "moving"))
    out.append((arrived - wait_s + 5, 20.0, "stopped"))
    return out


def test_the_model_learns_the_fleet_times_and_the_wait_at_the_door():
    model = TravelTimeModel(prior_speed_mps=7.0)
    for _ in range(60):  # enough that the 3 pseudo-trips of the prior hardly count
        assert model.observe(approach(T0, pace_s_per_m=0.25, wait_s=60.0), T0) == 12
    assert model.expected_s(5000) == pytest.approx(5000 * 0.25 + 60, rel=0.05)
    assert model.expected_s(400) == pytest.approx(400 * 0.25 + 60, rel=0.05)
    # Stopped near the door: the rest of the wait, not the drive.
    assert model.expected_s(20, "stopped") == pytest.approx(55, abs=8)


def test_one_odd_trip_does_not_move_the_medians():
    model = TravelTimeModel()
    for _ in range(10):
        model.observe(approach(T0, 0.25, 30.0), T0)
    before = model.expected_s(3000)
    model.observe(approach(T0, 2.0, 600.0), T0)  # a trip stuck in a jam for an hour
    assert model.expected_s(3000) == pytest.approx(before, rel=0.05)


def test_only_the_first_sample_per_band_counts_and_none_after_the_arrival():
    model = TravelTimeModel()
    samples = [(T0 - 100, 20.0, "stopped"), (T0 - 50, 25.0, "stopped"), (T0 + 5, 20.0, "moving")]
    assert model.observe(samples, T0) == 1


def test_the_travel_time_model_survives_a_round_trip_through_json():
    model = TravelTimeModel()
    for wait in (20.0, 40.0, 90.0):
        model.observe(approach(T0, 0.2, wait), T0)
    again = TravelTimeModel.from_dict(json.loads(json.dumps(model.to_dict())))
    for metres in (5.0, 90.0, 2500.0, 40000.0):
        for state in ("moving", "stopped"):
            assert again.expected_s(metres, state) == model.expected_s(metres, state)
    with pytest.raises(ValueError):
        TravelTimeModel.from_dict({"version": 2})


# --- estimator and tracker -----------------------------------------------------------------


def drive_in(estimator: EtaEstimator, margin_m: float | None = None) -> float:
    """Ten fixes 10 m/s toward the door from 3 km of road; the last estimate's seconds."""
    eta = None
    for k in range(10):
        lat, lon = plane(0, -3000 + 10 * k)
        eta = estimator.update(Fix(T0 + k, lat, lon, 5.0, 10.0), 3000 - 10 * k, margin_m)
    assert eta is not None
    return eta.seconds


def test_the_learned_travel_times_move_the_estimate():
    slow = TravelTimeModel(prior_speed_mps=7.0)
    for _ in range(60):
        slow.observe(approach(T0, 0.5, 60.0), T0)  # the fleet takes 2 m/s plus a minute
    plain = drive_in(EtaEstimator(*DOOR))
    learned = drive_in(EtaEstimator(*DOOR, travel_times=slow))
    assert learned > plain + 300
    only = drive_in(EtaEstimator(*DOOR, EtaConfig(learned_weight=1.0), travel_times=slow))
    assert only == pytest.approx(2910 * 0.5 + 60, rel=0.05)


def test_the_eta_is_to_the_fence_edge_not_to_the_door():
    to_door = drive_in(EtaEstimator(*DOOR))
    to_edge = drive_in(EtaEstimator(*DOOR), margin_m=700.0)
    assert to_edge == pytest.approx(to_door * (2910 - 700) / 2910, rel=0.01)


def test_the_tracker_reports_what_a_completed_approach_teaches():
    trace = generate_trip(1, seed=5, kind="normal")
    truth = trace.truth
    fence = CircleFence(truth.dest_lat, truth.dest_lon, truth.radius_m)
    model = TravelTimeModel()
    tracker = ArrivalTracker(
        truth.dest_lat,
        truth.dest_lon,
        fence,
        StraightLineProvider(CircuityModel()),
        travel_times=model,
    )
    trips = [u.trip for fix in trace.fixes if (u := tracker.update(fix)).trip is not None]
    (trip,) = trips
    assert truth.arrived_t is not None and trip.arrived_t == pytest.approx(truth.arrived_t, abs=60)
    assert len(trip.samples) >= 8
    assert all(t <= trip.arrived_t + 60 for t, _, _ in trip.samples)
    assert {state for _, _, state in trip.samples} <= {"moving", "stopped"}
    assert model.observe(trip.samples, trip.arrived_t) >= 8


# --- replay with a routing engine -----------------------------------------------------------


@pytest.fixture(scope="module")
def routed_run():
    traces = [generate_trip(i, seed=9, kind="normal") for i in range(4)]
    specs = [TripSpec.from_dict(t.truth.to_dict()) for t in traces]
    book = RoadBook(Road.from_latlon(t.truth.dest_lat, t.truth.dest_lon, t.route) for t in traces)
    asked: list[tuple[str, float]] = []

    def route(spec: TripSpec, fix: Fix) -> float | None:
        asked.append((spec.trip_id, fix.t))
        return book.route_distance_m(fix.lat, fix.lon, spec.dest_lat, spec.dest_lon)

    fixes = {t.truth.trip_id: t.fixes for t in traces}
    return specs, replay(specs, fixes, route_distance=route), asked


def test_the_routed_eta_is_replayed_beside_ours_until_the_check_in(routed_run):
    specs, result, asked = routed_run
    assert result.predictions and all(p.routed_s is not None for p in result.predictions)
    check_in = {e.trip_id: e.decided_t for e in result.events if e.kind == "check_in"}
    assert set(check_in) == {spec.trip_id for spec in specs}
    assert all(t <= check_in[trip_id] for trip_id, t in asked)
    assert result.routed_travel_times is not None


def test_routes_make_the_far_eta_better_on_these_trips(routed_run):
    specs, result, _ = routed_run
    report = score(specs, result)
    far = report.horizons[-1]
    assert far.n > 1000
    assert far.routed_mae_s < far.mae_s
    assert far.routed_ratio == pytest.approx(far.routed_mae_s / far.baseline_mae_s)


def test_the_report_shows_both_columns_only_with_a_routing_engine(routed_run):
    specs, result, _ = routed_run
    text = format_markdown(score(specs, result))
    assert "MAE ours, with routing engine" in text and "MAE ours, no routing engine" in text
    assert "ours, routed |" in text  # the per-case table too
    plain = replace(result, predictions=[replace(p, routed_s=None) for p in result.predictions])
    plain.routed_travel_times = None
    text = format_markdown(score(specs, plain))
    assert "with routing engine" not in text and "MAE ours" in text
    assert math.isnan(score(specs, plain).horizons[0].routed_mae_s)
