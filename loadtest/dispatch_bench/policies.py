"""The three dispatch policies the benchmark compares, all through the hub's own cores.

- ``greedy-nearest``: each waiting booking, oldest first, to the free, skilled, on-shift
  technician with the smallest ETA. It is ``realtime.dispatch.evaluate`` with every weight
  but the ETA's at zero, so its hard filters are exactly the ranking's.
- ``ranking``: today's dispatcher. Each waiting booking, oldest first, to the best total of
  ``evaluate`` with the default weights (ETA + rating + history + fairness).
- ``batch-W``: every W seconds, the waiting bookings and the free technicians in one
  ``realtime.batch_match.match``, each pair's cost the same ``evaluate`` total (None where
  a hard filter fails).

The one-at-a-time policies are asked after every event (a booking arrives, a technician
frees up or starts a shift); a batch policy only on its ticks, so its bookings wait for
the next tick too (W/2 on average: the price of seeing several at once).

Fairness: jobs today per technician against the median of the technicians on shift. Within
one call of a one-at-a-time policy the counts move after each booking (as if each were its
own event); a batch prices every pair with the counts before the batch
(``batch_match``'s rule). History starts neutral (None: the prior) for everyone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Protocol

import msgspec

from loadtest.dispatch_bench.world import Booking, Point, Technician, World
from realtime.batch_match import match
from realtime.dispatch import BookingFacts, Candidate, EtaOf, batch_cost, evaluate
from realtime.dispatch_weights import DEFAULT_WEIGHTS, DispatchWeights

# Only the ETA counts: greedy-nearest through the same filters as the ranking.
NEAREST_ONLY = DispatchWeights(
    eta=1.0, rating_per_star_s=0.0, history_s=0.0, fairness_per_job_s=0.0, preferred_bonus_s=0.0
)
# The city's kilometres become degrees around this point (equirectangular: exact enough
# over 10 km); ``Candidate`` wants coordinates, though the ETA here is the world's own.
ORIGIN_LAT, ORIGIN_LON = 52.52, 13.405
KM_PER_DEGREE = 111.32


class TechState(msgspec.Struct, frozen=True):
    """A technician as a policy sees them at one moment."""

    technician: Technician
    position: Point
    free: bool
    jobs_today: int


# (booking id, technician id)
Pair = tuple[str, str]


class Policy(Protocol):
    name: str
    # None: asked after every event; else asked every this many seconds.
    batch_interval_s: float | None

    def decide(
        self, world: World, now: float, waiting: Sequence[Booking], techs: Sequence[TechState]
    ) -> list[Pair]:
        """Which waiting bookings go to which technicians now (``waiting`` oldest first)."""
        ...


class OneAtATime:
    """Each waiting booking, oldest first, to the best of ``evaluate`` under ``weights``."""

    batch_interval_s: float | None = None

    def __init__(self, name: str, weights: DispatchWeights) -> None:
        self.name = name
        self.weights = weights

    def decide(
        self, world: World, now: float, waiting: Sequence[Booking], techs: Sequence[TechState]
    ) -> list[Pair]:
        candidates = {s.technician.id: candidate(s, now) for s in techs}
        positions = {s.technician.id: s.position for s in techs}
        pairs: list[Pair] = []
        for booking in waiting:
            ranking = evaluate(
                candidates.values(),
                facts(booking),
                eta_of(world, booking, positions, now),
                self.weights,
                median_jobs(candidates.values()),
                now,
            )
            if not ranking.ranked:
                continue
            chosen = ranking.ranked[0].technician_id
            pairs.append((booking.id, chosen))
            taken = candidates[chosen]
            candidates[chosen] = msgspec.structs.replace(
                taken, free=False, jobs_today=taken.jobs_today + 1
            )
        return pairs


class Batch:
    """Every ``interval_s``, one least-cost matching of the waiting and the free."""

    def __init__(self, interval_s: float, weights: DispatchWeights = DEFAULT_WEIGHTS) -> None:
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"a batch interval must be > 0 s, not {interval_s}")
        self.name = f"batch-{interval_s:g}s"
        self.batch_interval_s: float | None = interval_s
        self.weights = weights

    def decide(
        self, world: World, now: float, waiting: Sequence[Booking], techs: Sequence[TechState]
    ) -> list[Pair]:
        candidates = [candidate(s, now) for s in techs]
        positions = {s.technician.id: s.position for s in techs}
        median = median_jobs(candidates)
        totals: dict[str, dict[str, float]] = {}
        for booking in waiting:
            ranking = evaluate(
                candidates,
                facts(booking),
                eta_of(world, booking, positions, now),
                self.weights,
                median,
                now,
            )
            waited = now - booking.request_t
            totals[booking.id] = {
                r.technician_id: batch_cost(r.total_s, waited, self.weights) for r in ranking.ranked
            }
        free = sorted(c.technician_id for c in candidates if c.free and c.on_shift)
        matching = match(
            list(waiting), free, lambda booking, tech_id: totals[booking.id].get(tech_id)
        )
        return [(a.booking.id, a.technician) for a in matching.assignments]


def policies(batch_intervals_s: Sequence[float] = (60.0, 120.0)) -> list[Policy]:
    """The benchmark's line-up, in the order the report shows it."""
    return [
        OneAtATime("greedy-nearest", NEAREST_ONLY),
        OneAtATime("ranking", DEFAULT_WEIGHTS),
        *(Batch(w) for w in batch_intervals_s),
    ]


def candidate(state: TechState, now: float) -> Candidate:
    """The technician as ``evaluate`` wants them; the simulation knows where they are now."""
    tech = state.technician
    lat, lon = to_latlon(state.position)
    return Candidate(
        technician_id=tech.id,
        lat=lat,
        lon=lon,
        fix_t=now,
        skills=tech.skills,
        online=True,
        free=state.free,
        in_area=True,
        on_shift=tech.on_shift(now),
        rating=tech.rating,
        history=None,
        jobs_today=state.jobs_today,
    )


def facts(booking: Booking) -> BookingFacts:
    lat, lon = to_latlon(booking.location)
    return BookingFacts(dest_lat=lat, dest_lon=lon, required_skills=frozenset({booking.skill}))


def eta_of(world: World, booking: Booking, positions: dict[str, Point], now: float) -> EtaOf:
    """The noisy ETA every policy sees, and the road distance, from where each one is."""

    def eta(c: Candidate) -> tuple[float, float]:
        origin = positions[c.technician_id]
        seen = world.eta_seen_s(booking, c.technician_id, origin, now)
        return seen, 1000.0 * world.travel.road_km(origin, booking.location)

    return eta


def median_jobs(candidates: Iterable[Candidate]) -> float:
    """The median of jobs today over the technicians on shift (0 with nobody on shift)."""
    counts = [c.jobs_today for c in candidates if c.on_shift]
    return float(statistics.median(counts)) if counts else 0.0


def to_latlon(p: Point) -> tuple[float, float]:
    lat = ORIGIN_LAT + p.y_km / KM_PER_DEGREE
    lon = ORIGIN_LON + p.x_km / (KM_PER_DEGREE * math.cos(math.radians(ORIGIN_LAT)))
    return lat, lon
