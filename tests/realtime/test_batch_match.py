"""Batch matching: the least-cost assignment of bookings to technicians, never an infeasible
pair, against the one-at-a-time greedy baseline."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.batch_match import (
    Assignment,
    Matching,
    Unassigned,
    Unserved,
    greedy_nearest,
    match,
)

MIN = 60.0


def table(costs: dict[tuple[str, str], float | None]):
    """A cost function from a table; a missing pair is infeasible."""
    return lambda booking, technician: costs.get((booking, technician))


def pairs(matching: Matching) -> list[tuple[str, str]]:
    return [(a.booking, a.technician) for a in matching.assignments]


TEXTBOOK = table(
    {("A", "X"): 2 * MIN, ("A", "Y"): 3 * MIN, ("B", "X"): 4 * MIN, ("B", "Y"): 9 * MIN}
)


def test_the_textbook_case_where_nearest_first_is_worse():
    # Greedy: A takes its nearest, X (2 min); B is left with Y (9 min): 11 min.
    greedy = greedy_nearest(["A", "B"], ["X", "Y"], TEXTBOOK)
    assert pairs(greedy) == [("A", "X"), ("B", "Y")]
    assert greedy.total_cost == 11 * MIN
    # Optimal: A-Y (3 min) and B-X (4 min): 7 min.
    best = match(["A", "B"], ["X", "Y"], TEXTBOOK)
    assert best == Matching(
        assignments=[Assignment("A", "Y", 3 * MIN), Assignment("B", "X", 4 * MIN)],
        unassigned=[],
        total_cost=7 * MIN,
    )


def test_more_bookings_than_technicians_leaves_the_costliest_to_serve_waiting():
    costs = table(
        {
            ("A", "X"): 100.0,
            ("A", "Y"): 500.0,
            ("B", "X"): 200.0,
            ("B", "Y"): 150.0,
            ("C", "X"): 900.0,
            ("C", "Y"): 900.0,
        }
    )
    # Two of three served; the cheapest pair of pairs: A-X + B-Y = 250 (vs A-Y + B-X = 700,
    # any pair with C >= 1000).
    matching = match(["A", "B", "C"], ["X", "Y"], costs)
    assert pairs(matching) == [("A", "X"), ("B", "Y")]
    assert matching.total_cost == 250.0
    assert matching.unassigned == [Unassigned("C", Unserved.TECHNICIANS_TAKEN)]


def test_more_technicians_than_bookings_uses_the_best_ones():
    costs = table({("A", "X"): 300.0, ("A", "Y"): 100.0, ("A", "Z"): 200.0})
    matching = match(["A"], ["X", "Y", "Z"], costs)
    assert pairs(matching) == [("A", "Y")]
    assert matching.total_cost == 100.0
    assert matching.unassigned == []


def test_all_infeasible_assigns_nobody():
    matching = match(["A", "B"], ["X", "Y"], table({}))
    assert matching == Matching(
        assignments=[],
        unassigned=[
            Unassigned("A", Unserved.NO_FEASIBLE_TECHNICIAN),
            Unassigned("B", Unserved.NO_FEASIBLE_TECHNICIAN),
        ],
        total_cost=0.0,
    )
    assert greedy_nearest(["A", "B"], ["X", "Y"], table({})) == matching


def test_no_technicians_or_no_bookings():
    assert match(["A"], [], TEXTBOOK).unassigned == [
        Unassigned("A", Unserved.NO_FEASIBLE_TECHNICIAN)
    ]
    assert match([], ["X"], TEXTBOOK) == Matching([], [], 0.0)


def test_one_infeasible_pair_is_never_assigned_even_when_it_would_be_cheap_on_paper():
    # A-X is infeasible. Without the mask the textbook answer would be A-X + B-Y; with it,
    # A must take Y and B takes X.
    costs = table({("A", "Y"): 3 * MIN, ("B", "X"): 4 * MIN, ("B", "Y"): 1 * MIN})
    matching = match(["A", "B"], ["X", "Y"], costs)
    assert pairs(matching) == [("A", "Y"), ("B", "X")]
    assert matching.total_cost == 7 * MIN


def test_an_infeasible_pair_is_not_used_to_serve_one_more_booking():
    # Only X can serve both A and B, and B-Y is infeasible: one booking waits rather than
    # taking Y. A goes to X (cheaper), B waits because X is taken.
    costs = table({("A", "X"): 100.0, ("B", "X"): 200.0, ("A", "Y"): None})
    matching = match(["A", "B"], ["X", "Y"], costs)
    assert pairs(matching) == [("A", "X")]
    assert matching.unassigned == [Unassigned("B", Unserved.TECHNICIANS_TAKEN)]


def test_serving_one_more_booking_beats_a_cheaper_total():
    # Greedy gives A its nearest, X, and B (only X can serve it) waits: 1 served, 60 s.
    # The matching serves both, A-Y + B-X = 5000 + 7000: more served comes first.
    costs = table({("A", "X"): 60.0, ("A", "Y"): 5000.0, ("B", "X"): 7000.0})
    greedy = greedy_nearest(["A", "B"], ["X", "Y"], costs)
    assert pairs(greedy) == [("A", "X")]
    assert greedy.unassigned == [Unassigned("B", Unserved.TECHNICIANS_TAKEN)]
    best = match(["A", "B"], ["X", "Y"], costs)
    assert pairs(best) == [("A", "Y"), ("B", "X")]
    assert best.total_cost == 12_000.0


def test_negative_costs_from_a_preference_bonus_are_fine():
    costs = table({("A", "X"): -200.0, ("A", "Y"): 100.0, ("B", "X"): 50.0, ("B", "Y"): 400.0})
    # A-X + B-Y = 200; A-Y + B-X = 150.
    matching = match(["A", "B"], ["X", "Y"], costs)
    assert pairs(matching) == [("A", "Y"), ("B", "X")]
    assert matching.total_cost == 150.0


def test_ties_are_decided_the_same_way_every_time():
    # Every pairing costs 200 in total: the answer depends only on the input order.
    flat = table({(b, t): 100.0 for b in "AB" for t in "XY"})
    first = match(["A", "B"], ["X", "Y"], flat)
    assert first.total_cost == 200.0
    assert all(match(["A", "B"], ["X", "Y"], flat) == first for _ in range(5))
    assert greedy_nearest(["A", "B"], ["X", "Y"], flat) == Matching(
        [Assignment("A", "X", 100.0), Assignment("B", "Y", 100.0)], [], 200.0
    )


def test_the_cost_function_is_asked_once_per_pair():
    asked: list[tuple[str, str]] = []

    def cost(booking: str, technician: str) -> float:
        asked.append((booking, technician))
        return 1.0

    match(["A", "B", "C"], ["X", "Y"], cost)
    assert sorted(asked) == sorted((b, t) for b in "ABC" for t in "XY")


def test_a_cost_that_is_not_a_finite_number_is_refused():
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="booking #0 and technician #1 must be finite"):
            match(["A"], ["X", "Y"], lambda b, t, bad=bad: 1.0 if t == "X" else bad)
    with pytest.raises(ValueError, match="must be a number or None, not '5'"):
        match(["A"], ["X"], lambda b, t: "5")
    with pytest.raises(ValueError, match="must be a number or None"):
        greedy_nearest(["A"], ["X"], lambda b, t: True)


def test_large_spread_of_costs_still_serves_the_most():
    # A waiting cost must outweigh any saving: here a huge cost on one pair.
    costs = table({("A", "X"): 1.0, ("A", "Y"): 86_400.0 * 10, ("B", "X"): 86_400.0 * 10})
    matching = match(["A", "B"], ["X", "Y"], costs)
    assert pairs(matching) == [("A", "Y"), ("B", "X")]


# --- properties ----------------------------------------------------------------------------


def matrices(allow_infeasible: bool):
    cell = st.floats(-300.0, 7200.0, allow_nan=False)
    if allow_infeasible:
        cell = st.one_of(st.none(), cell)
    return st.integers(0, 6).flatmap(
        lambda rows: st.integers(0, 6).flatmap(
            lambda cols: st.lists(
                st.lists(cell, min_size=cols, max_size=cols), min_size=rows, max_size=rows
            ).map(lambda grid: (grid, cols))
        )
    )


def solve(solver, grid: list[list[float | None]], cols: int) -> Matching:
    return solver(list(range(len(grid))), list(range(cols)), lambda b, t: grid[b][t])


def check_valid(matching: Matching, grid: list[list[float | None]]) -> None:
    bookings = [a.booking for a in matching.assignments]
    technicians = [a.technician for a in matching.assignments]
    assert len(set(bookings)) == len(bookings)
    assert len(set(technicians)) == len(technicians)
    for assignment in matching.assignments:
        assert grid[assignment.booking][assignment.technician] == assignment.cost
        assert assignment.cost is not None
    served = set(bookings) | {u.booking for u in matching.unassigned}
    assert served == set(range(len(grid)))
    assert len(bookings) + len(matching.unassigned) == len(grid)


@given(matrices(allow_infeasible=False))
def test_on_feasible_matrices_the_matching_is_never_worse_than_greedy(case):
    grid, cols = case
    best, greedy = solve(match, grid, cols), solve(greedy_nearest, grid, cols)
    check_valid(best, grid)
    check_valid(greedy, grid)
    assert len(best.assignments) == len(greedy.assignments) == min(len(grid), cols)
    assert best.total_cost <= greedy.total_cost + 1e-6


@given(matrices(allow_infeasible=True))
def test_with_infeasible_pairs_it_serves_at_least_as_many_and_never_an_infeasible_one(case):
    grid, cols = case
    best, greedy = solve(match, grid, cols), solve(greedy_nearest, grid, cols)
    check_valid(best, grid)
    check_valid(greedy, grid)
    assert len(best.assignments) >= len(greedy.assignments)
    if len(best.assignments) == len(greedy.assignments):
        assert best.total_cost <= greedy.total_cost + 1e-6
    for unassigned in best.unassigned:
        feasible = any(cost is not None for cost in grid[unassigned.booking])
        expected = Unserved.TECHNICIANS_TAKEN if feasible else Unserved.NO_FEASIBLE_TECHNICIAN
        assert unassigned.reason == expected
