"""Dispatch: who may take a booking (hard filters), and how good each one is (a soft score).

Pure: candidates, the booking's facts, an ETA function and time in; a ranking out. No
store, no clock. The hub gathers the candidates and what the filters need
(``realtime/dispatcher.py``); batch dispatch feeds the same score into an assignment
(``realtime/batch_match.py``).

The score explains itself. Every component is in seconds of customer wait
(``DispatchWeights``), lower is better, and the total is their sum, so "the nearest one was
3 minutes closer, but this one is rated a star higher" is one line of the ranking:

    eta_s        weights.eta x the ETA the customer would be shown
    rating_s     weights.rating_per_star_s x (5 - rating); unrated counts as 4.0 stars
    history_s    weights.history_s x (1 - history score); no history counts as the prior
    fairness_s   weights.fairness_per_job_s x jobs today above the city's median (none below)
    preferred_s  -weights.preferred_bonus_s for the customer's preferred technician, else 0

The ETA comes from the caller (``eta_of``) and must be the estimator the customer sees, so
"fastest to arrive" means the same here as on the tracking page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from enum import StrEnum

import msgspec

from geofence.eta import EtaEstimator, RouteProvider
from geofence.model import Fix
from realtime.dispatch_weights import DispatchWeights
from realtime.history_score import PRIOR_SCORE, HistoryScore

# A position older than this says little about where the technician is now.
MAX_POSITION_AGE_S = 15 * 60.0
# The platform's ratings run 0..5 stars.
BEST_RATING = 5.0
# An unrated technician counts as this: the typical rating of a city's technicians, so a
# newcomer is neither pushed ahead of good ones nor behind poor ones.
NEUTRAL_RATING = 4.0


class Reason(StrEnum):
    """Why a candidate was filtered out: stable codes for the API and the logs."""

    OFFLINE = "offline"
    BUSY = "busy"
    SKILLS = "skills"
    OUT_OF_AREA = "out_of_area"
    OFF_SHIFT = "off_shift"
    STALE_POSITION = "stale_position"


class Candidate(msgspec.Struct, frozen=True):
    """A technician dispatch might choose, with everything the filters and score read.

    No field has a default: a filter input the caller forgot must not pass silently.
    """

    technician_id: str
    lat: float
    lon: float
    fix_t: float
    skills: frozenset[str]
    # The filters' inputs, worked out by the caller (fleet, bookings, city, shifts).
    online: bool
    free: bool  # no other open booking
    in_area: bool
    on_shift: bool
    # The score's inputs.
    rating: float | None  # 0..5 from the platform; None = unrated (NEUTRAL_RATING)
    history: HistoryScore | None  # None = no record (the history prior)
    jobs_today: int

    def __post_init__(self) -> None:
        for name in ("lat", "lon", "fix_t"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"candidate {self.technician_id}: {name} must be finite")
        if self.rating is not None and not (0.0 <= self.rating <= BEST_RATING):
            raise ValueError(
                f"candidate {self.technician_id}: rating must be within 0..5, not {self.rating}"
            )
        if self.jobs_today < 0:
            raise ValueError(
                f"candidate {self.technician_id}: jobs_today must be >= 0, not {self.jobs_today}"
            )


class BookingFacts(msgspec.Struct, frozen=True):
    """What dispatch needs to know of the booking."""

    dest_lat: float
    dest_lon: float
    required_skills: frozenset[str] = frozenset()
    preferred_technician_id: str | None = None


class Components(msgspec.Struct, frozen=True):
    """The score's parts, each in seconds of customer wait; negative is a bonus."""

    eta_s: float
    rating_s: float
    history_s: float
    fairness_s: float
    preferred_s: float

    def total_s(self) -> float:
        return self.eta_s + self.rating_s + self.history_s + self.fairness_s + self.preferred_s


class Ranked(msgspec.Struct, frozen=True):
    technician_id: str
    # The ETA and route distance the customer would be shown, before any weight.
    eta_s: float
    distance_m: float
    position_age_s: float
    components: Components
    total_s: float


class Excluded(msgspec.Struct, frozen=True):
    technician_id: str
    reason: Reason


class Evaluation(msgspec.Struct, frozen=True):
    ranked: list[Ranked]  # best (lowest total) first
    excluded: list[Excluded]  # by technician id


# (eta_s, distance_m) from the candidate's position to the booking.
EtaOf = Callable[[Candidate], tuple[float, float]]


def exclusion(candidate: Candidate, booking: BookingFacts, now: float) -> Reason | None:
    """The first hard filter the candidate fails, or None.

    The order is fixed, so one candidate always gets one stable reason: the most basic
    first (an offline technician's position is stale too, but "offline" is the news).
    """
    if not candidate.online:
        return Reason.OFFLINE
    if not candidate.free:
        return Reason.BUSY
    if not booking.required_skills <= candidate.skills:
        return Reason.SKILLS
    if not candidate.in_area:
        return Reason.OUT_OF_AREA
    if not candidate.on_shift:
        return Reason.OFF_SHIFT
    if now - candidate.fix_t > MAX_POSITION_AGE_S:
        return Reason.STALE_POSITION
    return None


def components(
    candidate: Candidate,
    booking: BookingFacts,
    eta_s: float,
    weights: DispatchWeights,
    city_median_jobs: float,
) -> Components:
    """Price each part of the candidate's score in seconds of customer wait."""
    rating = NEUTRAL_RATING if candidate.rating is None else candidate.rating
    history = PRIOR_SCORE if candidate.history is None else candidate.history.score
    above_median = max(0.0, candidate.jobs_today - city_median_jobs)
    preferred = candidate.technician_id == booking.preferred_technician_id
    return Components(
        eta_s=weights.eta * eta_s,
        rating_s=weights.rating_per_star_s * (BEST_RATING - rating),
        history_s=weights.history_s * (1.0 - history),
        fairness_s=weights.fairness_per_job_s * above_median,
        preferred_s=-weights.preferred_bonus_s if preferred else 0.0,
    )


def evaluate(
    candidates: Iterable[Candidate],
    booking: BookingFacts,
    eta_of: EtaOf,
    weights: DispatchWeights,
    city_median_jobs: float,
    now: float,
) -> Evaluation:
    """Filter the candidates, score the rest, best first; ties by (total, ETA, id).

    ``eta_of`` is called only for candidates that pass every filter.
    """
    if not (math.isfinite(city_median_jobs) and city_median_jobs >= 0.0):
        raise ValueError(f"city_median_jobs must be finite and >= 0, not {city_median_jobs}")
    ranked: list[Ranked] = []
    excluded: list[Excluded] = []
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.technician_id in seen:
            raise ValueError(f"technician {candidate.technician_id} is a candidate twice")
        seen.add(candidate.technician_id)
        reason = exclusion(candidate, booking, now)
        if reason is not None:
            excluded.append(Excluded(candidate.technician_id, reason))
            continue
        eta_s, distance_m = eta_of(candidate)
        if not (math.isfinite(eta_s) and eta_s >= 0 and math.isfinite(distance_m)):
            raise ValueError(
                f"eta_of gave ({eta_s}, {distance_m}) for {candidate.technician_id}: "
                "an ETA must be finite and >= 0"
            )
        parts = components(candidate, booking, eta_s, weights, city_median_jobs)
        ranked.append(
            Ranked(
                technician_id=candidate.technician_id,
                eta_s=eta_s,
                distance_m=distance_m,
                # A fix stamped slightly ahead of the hub's clock is fresh, not negative.
                position_age_s=max(now - candidate.fix_t, 0.0),
                components=parts,
                total_s=parts.total_s(),
            )
        )
    ranked.sort(key=lambda r: (r.total_s, r.eta_s, r.technician_id))
    excluded.sort(key=lambda e: e.technician_id)
    return Evaluation(ranked=ranked, excluded=excluded)


def route_eta(provider: RouteProvider, booking: BookingFacts, now: float) -> EtaOf:
    """The customer's ETA from a standing start: route distance over the prior speed.

    A fresh ``EtaEstimator`` per candidate, fed one fix, is what the tracking page would
    show the moment this technician set off.
    """

    def eta_of(candidate: Candidate) -> tuple[float, float]:
        distance = provider.route_distance_m(
            candidate.lat, candidate.lon, booking.dest_lat, booking.dest_lon
        )
        eta = EtaEstimator(booking.dest_lat, booking.dest_lon).update(
            Fix(t=now, lat=candidate.lat, lon=candidate.lon), distance
        )
        return eta.seconds, distance

    return eta_of


def batch_cost(total_s: float, waited_s: float, weights: DispatchWeights) -> float:
    """A booking-technician pair's cost in a batch (``batch_match.match``): the score less
    ``weights.waited`` x the seconds the booking has waited so far.

    The matching serves as many bookings as it can and then the least total cost, so
    without the wait a booking far from every free technician loses to nearer ones batch
    after batch (the benchmark's longest waits, loadtest/results/dispatch.md). With it an
    old booking's pairs are cheaper; among bookings that will all be served, the term is
    the same whichever technician each gets, so it changes who waits, not who drives.
    """
    return total_s - weights.waited * max(waited_s, 0.0)
