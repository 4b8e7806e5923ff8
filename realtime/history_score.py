"""A technician's track record as one number dispatch can weigh, and today's job count.

Pure: visit records and times in, a score out; no clock, no store. The hub reads the
records; dispatch (``realtime/dispatch.py``) turns the score into seconds of customer wait.

The score must not reward having no record. A newcomer with one completed visit has a
completion rate of 100 %, which says almost nothing; ranking them above a technician with
195 of 200 would be wrong, and ranking them last would starve them of the visits they need
to build a record. So each rate is a Bayesian average: the observed visits plus
``PRIOR_VISITS`` pseudo-visits at ``PRIOR_RATE``. With no visits the score is the prior;
each real visit moves it one part in (visits + 10) towards what the technician did.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

import msgspec

# Only the recent past: a technician who had a bad first year and a good last one is judged
# on the last one. 200 visits is a few months of full-time work.
WINDOW_VISITS = 200
# Pseudo-visits mixed into each rate, and the rate they carry: a typical technician
# completes about nine in ten bookings and arrives on time about as often.
PRIOR_VISITS = 10.0
PRIOR_RATE = 0.9
# A technician cancelling leaves a customer with no service at all; a late arrival costs
# the customer minutes. So completion weighs twice what punctuality does in the score.
COMPLETION_WEIGHT = 2.0
ON_TIME_WEIGHT = 1.0
# The score of a technician with no record (both rates at the prior): 0.9.
PRIOR_SCORE = PRIOR_RATE


class Outcome(StrEnum):
    COMPLETED = "completed"
    # The technician gave the booking back: counts against them.
    CANCELLED_BY_TECHNICIAN = "cancelled_by_technician"
    # The customer or the platform cancelled: says nothing about the technician.
    CANCELLED_OTHER = "cancelled_other"
    # The technician held the booking and never came: counts against them.
    NO_SHOW = "no_show"


# The outcomes the technician answers for (the completion rate's denominator).
ACCOUNTABLE = frozenset({Outcome.COMPLETED, Outcome.CANCELLED_BY_TECHNICIAN, Outcome.NO_SHOW})
_OUTCOMES = frozenset(o.value for o in Outcome)


class VisitRecord(msgspec.Struct, frozen=True):
    """One booking a technician held, as it ended (times are Unix seconds)."""

    booking_id: str
    outcome: Outcome
    # The booking's promised latest arrival; None when no window was promised.
    window_end_t: float | None
    # When check-in stamped the arrival; None when the technician never arrived.
    arrived_t: float | None
    # When the booking ended (completed or cancelled): orders the records.
    ended_t: float

    def __post_init__(self) -> None:
        # A plain string from the store is fine (Outcome is a StrEnum); an unknown one is not.
        if self.outcome not in _OUTCOMES:
            raise ValueError(
                f"visit {self.booking_id}: outcome must be one of {sorted(_OUTCOMES)}, "
                f"not {self.outcome!r}"
            )
        for name in ("window_end_t", "arrived_t", "ended_t"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"visit {self.booking_id}: {name} must be finite, not {value}")


class HistoryScore(msgspec.Struct, frozen=True):
    """What the last ``WINDOW_VISITS`` visits say, and the one number dispatch weighs."""

    # Records counted (at most WINDOW_VISITS), whatever their outcome.
    visits: int
    # completed / (completed + cancelled by technician + no-show); None with none of those.
    completion_rate: float | None
    # arrived by the window's end / visits with a window and an arrival; None with none.
    on_time_rate: float | None
    # Bookings the technician cancelled.
    cancellations: int
    # 0..1: the two rates shrunk towards the prior, completion weighing double.
    score: float


def history_score(records: Iterable[VisitRecord]) -> HistoryScore:
    """Score the last ``WINDOW_VISITS`` visits by ``ended_t``.

    score = (2 x completion' + 1 x on_time') / 3, where each primed rate is
    (hits + 10 x 0.9) / (trials + 10). A record's booking id must be unique: the same
    booking twice would count one visit twice.
    """
    recent = _last_visits(records)
    accountable = [r for r in recent if r.outcome in ACCOUNTABLE]
    completed = sum(1 for r in accountable if r.outcome == Outcome.COMPLETED)
    cancellations = sum(1 for r in recent if r.outcome == Outcome.CANCELLED_BY_TECHNICIAN)
    timed = [
        (r.arrived_t, r.window_end_t)
        for r in recent
        if r.window_end_t is not None and r.arrived_t is not None
    ]
    on_time = sum(1 for arrived, window_end in timed if arrived <= window_end)
    completion_shrunk = _shrunk(completed, len(accountable))
    on_time_shrunk = _shrunk(on_time, len(timed))
    score = (COMPLETION_WEIGHT * completion_shrunk + ON_TIME_WEIGHT * on_time_shrunk) / (
        COMPLETION_WEIGHT + ON_TIME_WEIGHT
    )
    return HistoryScore(
        visits=len(recent),
        completion_rate=completed / len(accountable) if accountable else None,
        on_time_rate=on_time / len(timed) if timed else None,
        cancellations=cancellations,
        score=score,
    )


def jobs_today(records: Iterable[VisitRecord], now: float, zone: ZoneInfo) -> int:
    """Visits ended since local midnight in the city's ``zone``, up to ``now``.

    Every outcome counts: each booking handed to the technician took their slot, and
    fairness shares out the handing. "Today" is the city's calendar day, not UTC's: in
    Auckland a UTC day starts at lunchtime.
    """
    if not math.isfinite(now):
        raise ValueError(f"now must be finite, not {now}")
    local = datetime.fromtimestamp(now, zone)
    # On a day whose midnight falls in a DST gap, fold=0 maps it to the gap's start: the
    # first instant of that day.
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone).timestamp()
    return sum(1 for r in records if midnight <= r.ended_t <= now)


def _last_visits(records: Iterable[VisitRecord]) -> list[VisitRecord]:
    ordered = sorted(records, key=lambda r: (r.ended_t, r.booking_id))
    seen: set[str] = set()
    for record in ordered:
        if record.booking_id in seen:
            raise ValueError(f"visit {record.booking_id} appears twice in the history")
        seen.add(record.booking_id)
    return ordered[-WINDOW_VISITS:]


def _shrunk(hits: int, trials: int) -> float:
    return (hits + PRIOR_VISITS * PRIOR_RATE) / (trials + PRIOR_VISITS)
