"""Dispatch: rank the technicians who could take a booking by their ETA to it.

Pure: candidates, destination and time in, ranking out. The ETA is the same estimator the
customer sees (straight line x learned circuity, prior speed), so "fastest to arrive" means
the same thing here as on the tracking page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from geofence.eta import EtaEstimator, RouteProvider
from geofence.model import Fix

# A position older than this says little about where the technician is now.
MAX_POSITION_AGE_S = 15 * 60.0


@dataclass(frozen=True)
class Candidate:
    technician_id: str
    lat: float
    lon: float
    fix_t: float
    skills: frozenset[str]


@dataclass(frozen=True)
class Ranked:
    technician_id: str
    eta_s: float
    distance_m: float
    position_age_s: float


def rank(
    candidates: Iterable[Candidate],
    dest_lat: float,
    dest_lon: float,
    required_skills: Iterable[str],
    provider: RouteProvider,
    now: float,
) -> list[Ranked]:
    """Technicians with every required skill and a recent position, fastest first."""
    required = frozenset(required_skills)
    ranking = []
    for candidate in candidates:
        age = now - candidate.fix_t
        if not required <= candidate.skills or age > MAX_POSITION_AGE_S:
            continue
        distance = provider.route_distance_m(candidate.lat, candidate.lon, dest_lat, dest_lon)
        eta = EtaEstimator(dest_lat, dest_lon).update(
            Fix(t=now, lat=candidate.lat, lon=candidate.lon), distance
        )
        ranking.append(Ranked(candidate.technician_id, eta.seconds, distance, max(age, 0.0)))
    ranking.sort(key=lambda r: (r.eta_s, r.position_age_s, r.technician_id))
    return ranking
