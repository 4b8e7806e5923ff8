"""Batch dispatch: match several waiting bookings to free technicians at once, at least cost.

Pure: bookings, technicians and a cost function in; a matching out. Dispatching bookings one
at a time, each to its nearest free technician, can be much worse than it needs to be:

    booking A: X 2 min, Y 3 min       one at a time: A-X, then B-Y  = 2 + 9 = 11 min
    booking B: X 4 min, Y 9 min       together:      A-Y and B-X    = 3 + 4 =  7 min

``match`` solves the assignment exactly (``scipy.optimize.linear_sum_assignment``, the
Hungarian method's modern form). ``greedy_nearest`` is the one-at-a-time baseline, for the
benchmark and the tests.

Cost: the caller's ``cost(booking, technician)`` is the dispatch score in seconds of
customer wait (``realtime/dispatch.py``: ETA, rating, history, fairness, preference), or
None when the technician may not take that booking (a hard filter failed). Negative costs
are fine (a preferred technician's bonus can outweigh a short ETA).

Fairness inside a batch: the fairness term is part of the cost, computed from each
technician's jobs today before the batch. A batch gives each technician at most one
booking (a matching cannot do otherwise), so one batch cannot pile work onto one person;
the next batch sees the new job counts.

Which bookings are served: as many as possible first, then at least total cost. A booking
left waiting is worse than any difference in minutes between two feasible matchings, and
the caller already refused the pairs that are too far (cost None).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Generic, TypeVar

import msgspec
import numpy as np
from scipy.optimize import linear_sum_assignment

B = TypeVar("B")
T = TypeVar("T")


class Unserved(StrEnum):
    """Why a booking got no technician in this batch: stable codes."""

    # No technician in the batch may take it (every pair's cost was None).
    NO_FEASIBLE_TECHNICIAN = "no_feasible_technician"
    # Some could, but each of them serves another booking of the batch.
    TECHNICIANS_TAKEN = "technicians_taken"


class Assignment(msgspec.Struct, Generic[B, T], frozen=True):
    booking: B
    technician: T
    cost: float


class Unassigned(msgspec.Struct, Generic[B], frozen=True):
    booking: B
    reason: Unserved


class Matching(msgspec.Struct, Generic[B, T], frozen=True):
    assignments: list[Assignment[B, T]]  # in the bookings' order
    unassigned: list[Unassigned[B]]  # in the bookings' order
    total_cost: float


Cost = Callable[[B, T], "float | None"]


def match(bookings: Sequence[B], technicians: Sequence[T], cost: Cost[B, T]) -> Matching[B, T]:
    """The matching that serves the most bookings and, among those, costs the least.

    Never assigns a pair whose cost is None: those entries are infinite in the solver's
    matrix, and each booking has a private "wait for the next batch" column instead, so
    the solver always has a way out that is not an infeasible pair. That column costs
    more than any change in feasible costs could save (``_waiting_cost``), so a booking
    waits only when serving it would leave more bookings waiting. With equal totals the
    solver's choice depends only on the order of the inputs: pass them sorted (by id).
    """
    costs = _cost_matrix(bookings, technicians, cost)
    rows, cols = len(bookings), len(technicians)
    feasible = np.isfinite(costs)
    if rows == 0 or not feasible.any():
        return _matching(bookings, technicians, costs, {})
    waiting = _waiting_cost(costs[feasible], min(rows, cols))
    # [ real technicians | one waiting column per booking, only on its diagonal ]
    padded = np.full((rows, cols + rows), np.inf)
    padded[:, :cols] = costs
    padded[np.arange(rows), cols + np.arange(rows)] = waiting
    chosen_rows, chosen_cols = linear_sum_assignment(padded)
    # A waiting column is no assignment; an infinite pair cannot be chosen (the solver
    # would rather report the matrix infeasible), and is checked again all the same.
    pairs = {
        int(row): int(col)
        for row, col in zip(chosen_rows, chosen_cols, strict=True)
        if col < cols and feasible[row, col]
    }
    return _matching(bookings, technicians, costs, pairs)


def greedy_nearest(
    bookings: Sequence[B], technicians: Sequence[T], cost: Cost[B, T]
) -> Matching[B, T]:
    """One booking at a time, in order, each to its cheapest free technician.

    What the hub does today when bookings are dispatched as they come in; ties go to the
    technician listed first.
    """
    costs = _cost_matrix(bookings, technicians, cost)
    taken: set[int] = set()
    pairs: dict[int, int] = {}
    for row in range(len(bookings)):
        options = [
            (costs[row, col], col)
            for col in range(len(technicians))
            if col not in taken and math.isfinite(costs[row, col])
        ]
        if options:
            _, col = min(options)
            pairs[row] = col
            taken.add(col)
    return _matching(bookings, technicians, costs, pairs)


def _cost_matrix(bookings: Sequence[B], technicians: Sequence[T], cost: Cost[B, T]) -> np.ndarray:
    """Every pair's cost, infinity for None; a cost that is not a finite number is a bug."""
    costs = np.full((len(bookings), len(technicians)), np.inf)
    for row, booking in enumerate(bookings):
        for col, technician in enumerate(technicians):
            value = cost(booking, technician)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(
                    f"cost of booking #{row} and technician #{col} must be a number or None, "
                    f"not {value!r}"
                )
            if not math.isfinite(value):
                raise ValueError(
                    f"cost of booking #{row} and technician #{col} must be finite (None means "
                    f"infeasible), not {value}"
                )
            costs[row, col] = float(value)
    return costs


def _waiting_cost(feasible_costs: np.ndarray, pairs: int) -> float:
    """A cost for leaving a booking unserved that outweighs any saving elsewhere.

    Serving one booking more changes the feasible part of the total by at most
    2 x pairs x max|cost| (each side has at most ``pairs`` feasible pairs), so a waiting
    cost above that always loses against serving one more booking.
    """
    largest = float(np.max(np.abs(feasible_costs)))
    return 2.0 * pairs * max(largest, 1.0) + 1.0


def _matching(
    bookings: Sequence[B],
    technicians: Sequence[T],
    costs: np.ndarray,
    pairs: dict[int, int],
) -> Matching[B, T]:
    assignments: list[Assignment[B, T]] = []
    unassigned: list[Unassigned[B]] = []
    for row, booking in enumerate(bookings):
        col = pairs.get(row)
        if col is not None:
            assignments.append(Assignment(booking, technicians[col], float(costs[row, col])))
        elif np.isfinite(costs[row]).any():
            unassigned.append(Unassigned(booking, Unserved.TECHNICIANS_TAKEN))
        else:
            unassigned.append(Unassigned(booking, Unserved.NO_FEASIBLE_TECHNICIAN))
    return Matching(
        assignments=assignments,
        unassigned=unassigned,
        total_cost=math.fsum(a.cost for a in assignments),
    )
