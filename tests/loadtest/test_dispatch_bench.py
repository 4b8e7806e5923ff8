"""The dispatch benchmark: a hand-worked day, the invariants of any day, and determinism."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.dispatch_bench.__main__ import main
from loadtest.dispatch_bench.metrics import day_metrics, mean_metrics
from loadtest.dispatch_bench.policies import (
    DEFAULT_WEIGHTS,
    NEAREST_ONLY,
    Batch,
    OneAtATime,
    Pair,
    TechState,
    candidate,
    median_jobs,
    policies,
)
from loadtest.dispatch_bench.report import summary
from loadtest.dispatch_bench.simulate import simulate
from loadtest.dispatch_bench.world import (
    HOUR_S,
    Booking,
    Point,
    Technician,
    TravelModel,
    World,
    WorldSpec,
    make_world,
)

EIGHT = 8 * HOUR_S
# Straight roads at 30 km/h all day: 1 km is 120 s.
FLAT = TravelModel(seed=0, circuity_min=1.0, circuity_max=1.0, free_kmh=30.0, rush_kmh=30.0)


def tech(
    tid: str, x: float, rating: float = 5.0, shift: tuple[float, float] = (8, 16)
) -> Technician:
    return Technician(
        id=tid,
        home=Point(x, 5.0),
        skills=frozenset({"plumbing"}),
        rating=rating,
        shift_start_t=shift[0] * HOUR_S,
        shift_end_t=shift[1] * HOUR_S,
    )


def booking(bid: str, x: float, t: float, skill: str = "plumbing") -> Booking:
    return Booking(id=bid, request_t=t, location=Point(x, 5.0), skill=skill, duration_s=3600.0)


def line_world(technicians: list[Technician], bookings: list[Booking]) -> World:
    return World(
        seed=0, technicians=tuple(technicians), bookings=tuple(bookings), travel=FLAT, eta_noise=0.0
    )


def textbook_world() -> World:
    """batch_match's textbook case on one street (x in km, all at y = 5).

        B=1 ... X=3 . A=4 .. Y=5.5        A: X 1 km = 2 min, Y 1.5 km = 3 min
                                          B: X 2 km = 4 min, Y 4.5 km = 9 min
    A is requested at 08:00:10, B at 08:00:20.
    """
    return line_world(
        [tech("X", 3.0, rating=5.0), tech("Y", 5.5, rating=4.0)],
        [booking("A", 4.0, EIGHT + 10), booking("B", 1.0, EIGHT + 20)],
    )


def pairs_of(world: World, policy: OneAtATime | Batch) -> dict[str, str]:
    return {job.booking_id: job.technician_id for job in simulate(world, policy).jobs}


# --- the hand-worked day ------------------------------------------------------------------


def test_greedy_takes_the_nearest_and_leaves_the_second_booking_the_far_technician() -> None:
    world = textbook_world()
    run = simulate(world, OneAtATime("greedy-nearest", NEAREST_ONLY))
    assert {j.booking_id: j.technician_id for j in run.jobs} == {"A": "X", "B": "Y"}
    m = day_metrics(world, run)
    # A waits X's 120 s; B, requested when only Y is free, waits Y's 540 s.
    assert [j.wait_s for j in run.jobs] == pytest.approx([120.0, 540.0])
    assert m.mean_wait_min == pytest.approx(5.5)  # (120 + 540) / 2 / 60
    assert m.p90_wait_min == pytest.approx(8.3)  # 120 + 0.9 x 420 = 498 s
    assert m.max_wait_min == pytest.approx(9.0)
    assert m.drive_km == pytest.approx(5.5)  # 1 + 4.5
    assert m.drive_km_per_job == pytest.approx(2.75)
    assert (m.served, m.unserved, m.jobs_std, m.jobs_range) == (2.0, 0.0, 0.0, 0.0)
    assert m.mean_rating == pytest.approx(4.5)


def test_ranking_agrees_with_greedy_on_the_textbook_day() -> None:
    # A: X 120 + 0 (5 stars) + 30 (neutral history) = 150 s, Y 180 + 120 + 30 = 330 s.
    assert pairs_of(textbook_world(), OneAtATime("ranking", DEFAULT_WEIGHTS)) == {
        "A": "X",
        "B": "Y",
    }


def test_batch_sees_both_bookings_and_swaps_them() -> None:
    world = textbook_world()
    run = simulate(world, Batch(60.0))
    # The first tick with anything waiting is 08:01:00. Costs (ETA + rating + 30 history):
    # A-X 150, A-Y 330, B-X 270, B-Y 690; A-Y + B-X = 600 beats A-X + B-Y = 840.
    assert {j.booking_id: j.technician_id for j in run.jobs} == {"A": "Y", "B": "X"}
    assert [j.assigned_t for j in run.jobs] == [EIGHT + 60, EIGHT + 60]
    # A: 50 s to the tick + 180 s; B: 40 s + 240 s.
    assert [j.wait_s for j in run.jobs] == pytest.approx([230.0, 280.0])
    m = day_metrics(world, run)
    assert m.mean_wait_min == pytest.approx(4.25)  # 255 s, against greedy's 330 s
    assert m.drive_km == pytest.approx(3.5)  # 1.5 + 2, against greedy's 5.5


def test_ranking_trades_a_minute_of_eta_for_a_better_rating() -> None:
    # X: 120 s + 1.5 stars x 120 = 300 s (+30); Y: 180 s + 0 (+30). Greedy takes X.
    world = line_world(
        [tech("X", 3.0, rating=3.5), tech("Y", 5.5, rating=5.0)], [booking("A", 4.0, EIGHT + 10)]
    )
    assert pairs_of(world, OneAtATime("greedy-nearest", NEAREST_ONLY)) == {"A": "X"}
    assert pairs_of(world, OneAtATime("ranking", DEFAULT_WEIGHTS)) == {"A": "Y"}


def test_a_booking_waits_for_the_first_technician_to_free_up() -> None:
    # One technician at x=4: A is on the spot (0 s), works 3600 s; B (x=5, 1 km) waits.
    world = line_world(
        [tech("X", 4.0)], [booking("A", 4.0, EIGHT + 10), booking("B", 5.0, EIGHT + 20)]
    )
    run = simulate(world, OneAtATime("greedy-nearest", NEAREST_ONLY))
    assert [(j.booking_id, j.assigned_t) for j in run.jobs] == [
        ("A", EIGHT + 10),
        ("B", EIGHT + 3610),
    ]
    # B: requested 08:00:20, X free at 09:00:10, 120 s away: 3590 + 120 s.
    assert run.jobs[1].wait_s == pytest.approx(3710.0)


def test_shift_edges_start_inclusive_end_exclusive_and_the_rest_is_unserved() -> None:
    world = line_world(
        [tech("X", 4.0, shift=(8, 9)), tech("Z", 4.0, shift=(9, 10))],
        [booking("A", 4.0, 9 * HOUR_S), booking("B", 4.0, 20 * HOUR_S - 1)],
    )
    run = simulate(world, OneAtATime("greedy-nearest", NEAREST_ONLY))
    # At 09:00 X's shift has ended and Z's begun; at 19:59:59 nobody is on shift.
    assert [(j.booking_id, j.technician_id) for j in run.jobs] == [("A", "Z")]
    assert run.unserved == ("B",)


def test_nobody_with_the_skill_means_unserved_not_a_wrong_assignment() -> None:
    world = line_world([tech("X", 4.0)], [booking("A", 4.0, EIGHT, skill="massage")])
    for policy in policies():
        run = simulate(world, policy)
        assert (run.jobs, run.unserved) == ((), ("A",))


def test_an_empty_day_serves_nothing_and_reports_no_wait() -> None:
    world = line_world([tech("X", 4.0)], [])
    run = simulate(world, Batch(60.0))
    m = day_metrics(world, run)
    assert (run.jobs, run.unserved, run.decisions) == ((), (), 0)
    assert (m.served, m.unserved, m.drive_km) == (0.0, 0.0, 0.0)
    assert m.mean_wait_min != m.mean_wait_min  # NaN: no booking, no wait


# --- invariants of any generated day ------------------------------------------------------


def check_invariants(world: World, policy_name: str, run) -> None:
    techs = {t.id: t for t in world.technicians}
    bookings = {b.id: b for b in world.bookings}
    served = [j.booking_id for j in run.jobs]
    assert len(served) == len(set(served)), f"{policy_name}: a booking served twice"
    assert set(served).isdisjoint(run.unserved)
    assert set(served) | set(run.unserved) == set(bookings)
    by_tech = defaultdict(list)
    for job in run.jobs:
        t, b = techs[job.technician_id], bookings[job.booking_id]
        assert t.on_shift(job.assigned_t), f"{policy_name}: {t.id} off shift"
        assert b.skill in t.skills, f"{policy_name}: {t.id} lacks {b.skill}"
        assert b.request_t <= job.assigned_t < world.day_end_t
        assert job.assigned_t <= job.arrival_t < job.end_t
        assert job.wait_s == pytest.approx(job.arrival_t - b.request_t)
        by_tech[t.id].append(job)
    for tid, jobs in by_tech.items():
        jobs.sort(key=lambda j: j.assigned_t)
        place = techs[tid].home
        for before, after in itertools.pairwise(jobs):
            assert after.assigned_t >= before.end_t, f"{policy_name}: {tid} on two jobs"
        for job in jobs:
            # Each drive starts where the last job was (they do not go home).
            target = bookings[job.booking_id].location
            assert job.drive_km == pytest.approx(world.travel.road_km(place, target))
            place = target


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), technicians=st.integers(1, 6), load=st.floats(5, 40))
def test_any_day_keeps_the_invariants_under_every_policy(
    seed: int, technicians: int, load: float
) -> None:
    world = make_world(WorldSpec(technicians=technicians, bookings=load), seed)
    for policy in policies():
        check_invariants(world, policy.name, simulate(world, policy))


def test_the_same_seed_gives_the_same_day_and_the_same_runs() -> None:
    spec = WorldSpec(technicians=6, bookings=30)
    first, again = make_world(spec, 3), make_world(spec, 3)
    assert first == again
    assert make_world(spec, 4) != first
    for policy in policies():
        assert simulate(first, policy) == simulate(again, policy)


def test_a_policy_that_breaks_the_rules_is_refused() -> None:
    class Cheat:
        batch_interval_s = None

        def __init__(self, name: str, pairs: list[Pair]) -> None:
            self.name, self.pairs = name, pairs

        def decide(self, world, now, waiting, techs) -> list[Pair]:
            return self.pairs

    world = line_world(
        [tech("X", 3.0), tech("Z", 4.0, shift=(12, 20))],
        [booking("A", 4.0, EIGHT + 10), booking("M", 4.0, EIGHT + 10, skill="massage")],
    )
    for pairs, message in [
        ([("A", "X"), ("A", "X")], "not waiting"),
        ([("A", "Z")], "off shift"),
        ([("M", "X")], "lacks the skill"),
        ([("A", "nobody")], "unknown technician"),
        ([("Q", "X")], "not waiting"),
    ]:
        with pytest.raises(ValueError, match=message):
            simulate(world, Cheat("cheat", pairs))


# --- the travel model and the policies' inputs --------------------------------------------


def test_rush_hour_is_slower_and_the_circuity_is_one_per_pair() -> None:
    travel = TravelModel(seed=5)
    a, b = Point(0.0, 0.0), Point(3.0, 4.0)  # 5 km apart
    circuity = travel.circuity(a, b)
    assert 1.3 <= circuity <= 1.5
    assert travel.circuity(b, a) == circuity
    # 5 km x circuity at 18 km/h (08:xx) and at 30 km/h (12:xx).
    assert travel.travel_s(a, b, 8.5 * HOUR_S) == pytest.approx(5 * circuity / 18 * 3600)
    assert travel.travel_s(a, b, 12 * HOUR_S) == pytest.approx(5 * circuity / 30 * 3600)


def test_the_eta_a_policy_sees_is_within_the_noise_and_fixed_per_pair() -> None:
    world = make_world(WorldSpec(technicians=5, bookings=20), 1)
    b, origin, now = world.bookings[0], Point(1.0, 1.0), 12 * HOUR_S
    truth = world.travel.travel_s(origin, b.location, now)
    seen = [world.eta_seen_s(b, t.id, origin, now) for t in world.technicians]
    assert all(0.85 * truth <= s <= 1.15 * truth for s in seen)
    assert len(set(seen)) == len(seen)  # each technician's error is their own
    assert world.eta_seen_s(b, "t000", origin, now) == seen[0]


def test_the_fairness_median_counts_only_technicians_on_shift() -> None:
    states = [
        TechState(technician=tech("X", 1.0), position=Point(1, 5), free=True, jobs_today=4),
        TechState(technician=tech("Y", 2.0), position=Point(2, 5), free=True, jobs_today=2),
        TechState(
            technician=tech("Z", 3.0, shift=(12, 20)), position=Point(3, 5), free=True, jobs_today=0
        ),
    ]
    assert median_jobs([candidate(s, EIGHT) for s in states]) == 3.0  # median of 4 and 2
    assert median_jobs([]) == 0.0


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: WorldSpec(technicians=0), "technician"),
        (lambda: TravelModel(seed=0, circuity_min=0.9), "circuity"),
        (lambda: TravelModel(seed=0, rush_kmh=0.0), "speeds"),
        (lambda: Batch(0.0), "batch interval"),
        (
            lambda: line_world([tech("X", 1.0)], [booking("A", 1, 9e4), booking("B", 1, 3e4)]),
            "request order",
        ),
        (lambda: line_world([tech("X", 1.0), tech("X", 2.0)], []), "unique"),
        (
            lambda: World(seed=0, technicians=(), bookings=(), travel=FLAT, eta_noise=1.0),
            "eta_noise",
        ),
        (lambda: mean_metrics([]), "no days"),
        (lambda: summary({}), "greedy-nearest"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


# --- the report and the CLI ---------------------------------------------------------------


def test_the_cli_writes_a_table_per_metric_with_every_policy(tmp_path: Path, capsys) -> None:
    out = tmp_path / "dispatch.md"
    assert (
        main(["--days", "2", "--seed", "7", "--load", "4:12", "--batch", "60", "--out", str(out)])
        == 0
    )
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert text.startswith("# Dispatch benchmark")
    assert "## 4 technicians, 12 bookings a day expected (2 days)" in text
    assert text.count("| day (seed) | bookings | greedy-nearest | ranking | batch-60s |") == 10
    assert text.count("| **mean** |") == 10
    assert "| 7 |" in text and "| 8 |" in text


def test_the_cli_refuses_a_malformed_load() -> None:
    with pytest.raises(SystemExit):
        main(["--load", "forty"])


def test_the_summary_names_the_best_and_flags_identical_policies() -> None:
    world = textbook_world()
    means = {p.name: day_metrics(world, simulate(world, p)) for p in policies((60.0,))}
    text = summary(means, ["ranking"])
    assert "Shortest mean wait: batch-60s." in text
    assert "ranking gave the same numbers as greedy-nearest" in text
    assert "- batch-60s: mean wait 4.2 min (-23 %)" in text  # 4.25 vs 5.5


def test_a_day_metric_struct_round_trips() -> None:
    # The report reads DayMetrics fields by name: keep them plain data.
    world = textbook_world()
    m = day_metrics(world, simulate(world, Batch(60.0)), runtime_s=0.5)
    assert msgspec.json.decode(msgspec.json.encode(m), type=type(m)) == m


def test_the_summary_prices_the_ranking_and_calls_near_equal_values_a_tie() -> None:
    world = textbook_world()
    greedy = day_metrics(world, simulate(world, OneAtATime("greedy-nearest", NEAREST_ONLY)))
    # 1.1 min more mean wait (5.5 -> 6.6) for 0.25 stars; std dev 0.5 % above the best: a tie.
    ranking = msgspec.structs.replace(
        greedy, mean_wait_min=6.6, mean_rating=4.75, jobs_std=0.5, unserved=1.0
    )
    greedy = msgspec.structs.replace(greedy, jobs_std=0.4975)
    text = summary({"greedy-nearest": greedy, "ranking": ranking})
    assert "ranking cost 1.1 min of mean wait for a technician rated +0.250 stars" in text
    assert "Most even workload (jobs std dev): greedy-nearest, ranking." in text
    assert "Fewest unserved: greedy-nearest." in text
