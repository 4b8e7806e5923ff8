"""The synthetic trip generator: deterministic, realistic in its noise, honest in its truth."""

from __future__ import annotations

import math
import statistics
from itertools import pairwise

import pytest

from geofence.geo import distance_m
from loadtest.trace_route import Line
from loadtest.traces import KINDS, Trace, _Trip, generate, generate_trip

SEED = 11
N = 24


@pytest.fixture(scope="module")
def traces() -> list[Trace]:
    return generate(N, seed=SEED)


def errors_m(trace: Trace) -> list[float]:
    return [
        distance_m(fix.lat, fix.lon, lat, lon)
        for fix, (lat, lon) in zip(trace.fixes, trace.true_positions, strict=True)
    ]


def from_door(trace: Trace, lat: float, lon: float) -> float:
    return distance_m(lat, lon, trace.truth.dest_lat, trace.truth.dest_lon)


def test_same_seed_same_trip_and_trips_do_not_depend_on_how_many_are_asked_for(traces):
    again = generate_trip(5, seed=SEED)
    assert again == traces[5]
    assert generate(6, seed=SEED)[5] == again


def test_another_seed_gives_another_trip():
    assert generate_trip(0, seed=1).fixes != generate_trip(0, seed=2).fixes


def test_every_kind_can_be_forced():
    for kind in KINDS:
        assert generate_trip(0, seed=3, kind=kind).truth.kind == kind
    with pytest.raises(ValueError, match="unknown trip kind"):
        generate_trip(0, kind="teleport")


def test_fixes_are_in_time_order_with_known_fields(traces):
    for trace in traces:
        times = [fix.t for fix in trace.fixes]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert trace.truth.start_t == times[0]
        for fix in trace.fixes[:50]:
            assert fix.acc is None or fix.acc > 0
            assert fix.speed is None or fix.speed >= 0
            assert fix.heading is None or 0 <= fix.heading < 360


def test_trips_start_2_to_15_km_away_on_routes_1_2_to_1_5_times_the_straight_line(traces):
    for trace in traces:
        first = trace.true_positions[0]
        assert 1900 <= from_door(trace, *first) <= 15200
        if trace.truth.kind in ("normal", "park_walk"):
            assert 1.15 <= trace.truth.route_m / trace.truth.straight_m <= 1.55


def test_driving_is_one_fix_a_second_with_5_to_15_m_jitter(traces):
    steps, errs, within_acc = [], [], []
    for trace in traces:
        arrived = trace.truth.arrived_t or math.inf
        for a, b, err in zip(trace.fixes, trace.fixes[1:], errors_m(trace)[1:], strict=False):
            if b.t >= arrived - 300 or b.acc is None or b.acc > 25:
                continue  # driving only; re-acquisition fixes after a tunnel are worse
            steps.append(b.t - a.t)
            if err < 150:  # leave the rare outliers to their own test
                errs.append(err)
                within_acc.append(err <= b.acc)
    assert statistics.median(steps) == 1.0
    assert 4.0 <= statistics.median(errs) <= 15.0
    # acc is a 68 % radius: about two fixes in three are within it.
    assert 0.55 <= sum(within_acc) / len(within_acc) <= 0.8


def test_indoors_the_accuracy_is_20_to_50_m_and_fixes_may_be_sparse(traces):
    accs, steps = [], []
    for trace in traces:
        truth = trace.truth
        if truth.arrived_t is None or truth.departed_t is None:
            continue
        inside = [f for f in trace.fixes if truth.arrived_t + 600 < f.t < truth.departed_t - 600]
        accs += [f.acc for f in inside if f.acc is not None and f.acc < 100]
        steps += [b.t - a.t for a, b in pairwise(inside)]
    assert 20.0 <= statistics.median(accs) <= 50.0
    assert min(accs) >= 15.0 and max(accs) <= 80.0
    assert statistics.median(steps) in (1.0, 5.0)


def test_outliers_are_rare_single_200_to_800_m_jumps(traces):
    total = sum(len(t.fixes) for t in traces)
    jumps = []
    for trace in traces:
        errs = errors_m(trace)
        fixes = trace.fixes
        # After a tunnel or a doze the first fixes are coarse (acc x3): not outliers.
        gaps = [0.0] + [b.t - a.t for a, b in pairwise(fixes)]
        settled = [i >= 6 and max(gaps[i - 5 : i + 1]) <= 10 for i in range(len(fixes))]
        for i, err in enumerate(errs):
            if err > 190 and settled[i]:
                jumps.append(err)
                # single: the fixes around it are ordinary
                assert all(errs[j] < 150 for j in (i - 1, i + 1) if 0 <= j < len(errs))
    assert jumps, "some trips must carry outliers"
    assert len(jumps) / total < 0.002
    assert all(jump <= 950 for jump in jumps)


def test_tunnels_are_30_to_120_s_without_fixes_while_driving(traces):
    gaps = []
    for trace in traces:
        if "tunnel" not in trace.truth.tags:
            continue
        arrived = trace.truth.arrived_t or math.inf
        gaps += [
            b.t - a.t
            for a, b in zip(trace.fixes, trace.fixes[1:], strict=False)
            if b.t < arrived and b.t - a.t > 20
        ]
    assert gaps, "some trips must go through tunnels"
    assert all(29 <= gap <= 125 for gap in gaps)


def test_arrival_and_departure_are_the_fence_crossings_of_the_visit(traces):
    visits = 0
    for trace in traces:
        truth = trace.truth
        if truth.kind == "drive_past":
            assert truth.arrived_t is None and truth.departed_t is None
            continue
        visits += 1
        assert truth.arrived_t is not None and truth.departed_t is not None
        assert 30 * 60 <= truth.departed_t - truth.arrived_t <= 100 * 60
        for fix, (lat, lon) in zip(trace.fixes, trace.true_positions, strict=True):
            d = from_door(trace, lat, lon)
            if truth.arrived_t + 2 <= fix.t <= truth.departed_t - 2:
                assert d <= truth.radius_m + 1, "inside for the whole visit"
            elif truth.arrived_t - 30 <= fix.t <= truth.arrived_t - 2:
                assert d > truth.radius_m - 1, "outside just before arriving"
            elif truth.departed_t + 2 <= fix.t <= truth.departed_t + 30:
                assert d > truth.radius_m - 1, "outside just after leaving"
    assert visits >= N // 2


def test_park_and_walk_trips_park_away_and_walk_in(traces):
    walks = [t for t in traces if t.truth.kind == "park_walk"]
    assert walks
    for trace in walks:
        assert trace.truth.park_m is not None and 60 <= trace.truth.park_m <= 140


def test_a_drive_past_goes_by_the_door_without_stopping_for_long(traces):
    for trace in (generate_trip(i, seed=SEED, kind="drive_past") for i in range(4)):
        nearest = min(from_door(trace, lat, lon) for lat, lon in trace.true_positions)
        assert nearest <= 70
        near = [f for f, p in zip(trace.fixes, trace.true_positions, strict=True)
                if from_door(trace, *p) <= trace.truth.radius_m]  # fmt: skip
        if near:
            assert near[-1].t - near[0].t <= 150, "a red light at most, never a visit"


def test_truth_serialises_to_the_trips_file_format(traces):
    entry = traces[0].truth.to_dict()
    assert set(entry) >= {"trip_id", "destination", "geofence_radius_m", "arrived_t"}
    assert set(entry["destination"]) == {"lat", "lon"}


# --- truth for oracle studies: phases and what is left of the approach ---------------------

PHASES = {"drive", "light", "car", "walk", "indoor"}


def test_every_fix_has_a_true_phase_and_approach_truth(traces):
    for trace in traces:
        n = len(trace.fixes)
        assert len(trace.phases) == len(trace.free_flow_left_s) == len(trace.route_left_m) == n
        assert set(trace.phases) <= PHASES
        assert {"drive", "light"} <= set(trace.phases), "moving and stopped at lights"
        if trace.truth.kind == "drive_past":
            assert set(trace.phases) == {"drive", "light"}
        else:
            assert {"car", "walk", "indoor"} <= set(trace.phases)
        for phase, fix in zip(trace.phases, trace.fixes, strict=True):
            if phase == "light" and fix.speed is not None:
                assert fix.speed < 2.0  # true speed <= 0.5 m/s plus the phone's noise


def test_a_visit_from_outside_the_fence_sits_in_the_car_and_walks_in_before_arriving():
    outside = 0
    for index in range(6):
        trace = generate_trip(index, seed=SEED, kind="park_walk")
        truth = trace.truth
        if truth.park_m < truth.radius_m + 5:
            continue  # parked inside the fence: arrived while driving
        outside += 1
        before = [
            p for f, p in zip(trace.fixes, trace.phases, strict=True) if f.t < truth.arrived_t
        ]
        assert {"car", "walk"} <= set(before)
        first_car = before.index("car")
        assert set(before[:first_car]) <= {"drive", "light"}
        assert set(before[first_car:]) <= {"car", "walk"}
        assert before[-1] == "walk"
    assert outside >= 2


def test_free_flow_and_route_left_count_down_along_the_approach_then_stop(traces):
    overshoots = [generate_trip(i, seed=SEED, kind="overshoot") for i in range(3)]
    for trace in [*traces, *overshoots]:
        free_flow, route_left = trace.free_flow_left_s, trace.route_left_m
        on_road = [v for v in free_flow if v is not None]
        n = len(on_road)
        assert free_flow[:n] == tuple(on_road), "a value for each fix up to the final stop"
        assert all(v is None for v in free_flow[n:]) and all(v is None for v in route_left[n:])
        assert all(v is not None for v in route_left[:n])
        # Counting down even where an overshoot drives the same street twice.
        assert all(b <= a for a, b in pairwise(on_road))
        assert all(b <= a for a, b in pairwise(route_left[:n]))
        assert on_road[-1] <= 5.0 and route_left[n - 1] <= 20.0
        # Free flow: route metres at 5-14 m/s (the cruise speeds).
        assert route_left[0] / 14.5 <= on_road[0] <= route_left[0] / 4.9
        assert abs(route_left[0] - trace.truth.route_m) <= 50.0
        if trace.truth.kind != "drive_past":
            assert trace.phases[n] == "car", "None from the moment the car is parked"
            assert set(trace.phases[:n]) <= {"drive", "light"}


def test_the_oracle_truth_draws_no_random_numbers_so_the_fixes_are_unchanged(monkeypatch):
    plain = {kind: generate_trip(2, seed=SEED, kind=kind) for kind in KINDS}
    compute = _Trip._left_on_approach

    def checked(self, truths):
        state = self.rng.getstate()
        out = compute(self, truths)
        assert self.rng.getstate() == state
        return out

    monkeypatch.setattr(_Trip, "_left_on_approach", checked)
    for kind, trace in plain.items():
        assert generate_trip(2, seed=SEED, kind=kind) == trace

    # Without the oracle truth at all, the phone's fixes and the truth are the same.
    monkeypatch.setattr(_Trip, "_left_on_approach", lambda self, truths: ((), (), ()))
    for kind, trace in plain.items():
        bare = generate_trip(2, seed=SEED, kind=kind)
        assert bare.fixes == trace.fixes and bare.truth == trace.truth
        assert bare.true_positions == trace.true_positions and bare.route == trace.route


def test_the_road_enters_the_fence_where_it_last_crosses_the_circle():
    straight = Line([(-200.0, 0.0), (0.0, 0.0)], [10.0], [])
    assert straight.last_entry(50.0) == pytest.approx(150.0)
    # Past the door and back (an overshoot): the second entry is the arrival.
    loop = Line([(-200.0, 10.0), (200.0, 10.0), (200.0, -10.0), (0.0, -10.0)], [10.0] * 3, [6, 6])
    entry = math.sqrt(50.0**2 - 10.0**2)
    assert loop.last_entry(50.0) == pytest.approx(400.0 + 20.0 + 200.0 - entry)
    assert straight.last_entry(-1.0) == straight.length  # ends outside: the end


def test_free_flow_to_the_fence_ends_at_the_fence_edge_or_at_the_parking_place():
    checked = set()
    for index in range(12):
        for kind in ("normal", "park_walk"):
            trace = generate_trip(index, seed=SEED, kind=kind)
            truth = trace.truth
            n = sum(v is not None for v in trace.free_flow_left_s)
            to_fence, left = trace.free_flow_to_fence_s[:n], trace.free_flow_left_s[:n]
            assert all(v is None for v in trace.free_flow_to_fence_s[n:])
            assert all(0 <= f <= total for f, total in zip(to_fence, left, strict=True))
            assert all(b <= a for a, b in pairwise(to_fence))
            if truth.park_m > truth.radius_m + 1:  # parked outside: to the parking place
                assert to_fence == left
                checked.add("outside")
            elif truth.park_m < truth.radius_m - 1:  # inside: 0 from the fence edge on
                inside_road = [
                    f
                    for f, pos in zip(to_fence, trace.true_positions, strict=False)
                    if distance_m(*pos, truth.dest_lat, truth.dest_lon) < truth.radius_m - 2
                ]
                assert inside_road and all(f <= 1.0 for f in inside_road[-5:])
                assert to_fence[0] < left[0]
                checked.add("inside")
    assert checked == {"outside", "inside"}
