"""Trip plans for the simulator, from the synthetic traces: pure, no hub."""

from __future__ import annotations

import pytest

from geofence.geo import distance_m
from loadtest.sim_trips import DEFAULT_CENTRE, SIM_MIX, plan_trips, relocate
from loadtest.traces import generate_trip


def test_the_same_seed_plans_the_same_trips_and_dead_zones_do_not_move_anything_else():
    first = plan_trips(4, seed=7, run_id="a", sos_rate=0.5)
    again = plan_trips(4, seed=7, run_id="a", sos_rate=0.5)
    quiet = plan_trips(4, seed=7, run_id="a", sos_rate=0.5, dead_zones=False)
    assert first == again
    assert [p.destination for p in quiet] == [p.destination for p in first]
    assert [p.sos_at_s for p in quiet] == [p.sos_at_s for p in first]
    assert all(not p.dead_zones for p in quiet)
    assert plan_trips(4, seed=8, run_id="a") != first


def test_trips_go_to_destinations_around_the_centre_with_unique_ids():
    plans = plan_trips(20, seed=1, run_id="r1", spread_m=3000.0)
    for plan in plans:
        assert distance_m(*plan.destination, *DEFAULT_CENTRE) <= 3000.0 + 1
        assert plan.arrive_at_s is not None  # no drive-pasts: everyone arrives
    ids = [p.booking_id for p in plans] + [p.technician_id for p in plans]
    assert len(set(ids)) == 40 and all("r1" in i for i in ids)


def test_relocating_a_trace_keeps_its_distances_from_the_door():
    trace = generate_trip(3, seed=2, mix=SIM_MIX)
    dest = (48.8566, 2.3522)
    fixes, arrive, visit = relocate(trace, dest)
    truth = trace.truth
    assert len(fixes) == len(trace.fixes)
    assert fixes[0].offset_s == 0.0 and arrive == truth.arrived_t - trace.fixes[0].t
    assert visit == truth.departed_t - truth.arrived_t
    for moved, original in list(zip(fixes, trace.fixes, strict=True))[::50]:
        before = distance_m(original.lat, original.lon, truth.dest_lat, truth.dest_lon)
        after = distance_m(moved.lat, moved.lon, *dest)
        assert after == pytest.approx(before, rel=1e-3, abs=0.5)


def test_dead_zones_and_sos_presses_fall_on_the_way_to_the_door():
    plans = plan_trips(10, seed=3, run_id="z", sos_rate=1.0)
    for plan in plans:
        assert plan.arrive_at_s is not None
        assert 1 <= len(plan.dead_zones) <= 2
        for start, end in plan.dead_zones:
            assert 0 < start < end <= plan.arrive_at_s + 90 and 20 <= end - start <= 180
        assert plan.sos_at_s is not None and 0 < plan.sos_at_s < plan.arrive_at_s
    assert all(p.sos_at_s is None for p in plan_trips(10, seed=3, run_id="z", sos_rate=0.0))


def test_a_demo_trip_starts_near_the_door_with_a_short_visit():
    full = plan_trips(3, seed=0, run_id="d")
    short = plan_trips(3, seed=0, run_id="d", start_within_m=2000.0, max_visit_s=300.0)
    for long_plan, plan in zip(full, short, strict=True):
        assert distance_m(plan.fixes[0].lat, plan.fixes[0].lon, *plan.destination) <= 2000.0
        assert plan.fixes[0].offset_s == 0.0
        assert plan.visit_s == 300.0
        assert plan.fixes[-1].offset_s < long_plan.fixes[-1].offset_s
        offsets = [f.offset_s for f in plan.fixes]
        assert offsets == sorted(offsets)


def test_a_parked_tail_keeps_the_phone_reporting_where_the_trip_ends():
    # A sped-up trace ends before the hub's check-out dwell has passed on its clock: the
    # technician then stays parked at the next job, still reporting.
    bare = plan_trips(2, seed=0, run_id="p")
    parked = plan_trips(2, seed=0, run_id="p", park_after_s=60.0)
    for plan, tail in zip(bare, parked, strict=True):
        extra = tail.fixes[len(plan.fixes) :]
        assert tail.fixes[: len(plan.fixes)] == plan.fixes and len(extra) == 12
        last = plan.fixes[-1]
        assert {(f.lat, f.lon) for f in extra} == {(last.lat, last.lon)}
        assert [f.offset_s - last.offset_s for f in extra] == [5.0 * k for k in range(1, 13)]
