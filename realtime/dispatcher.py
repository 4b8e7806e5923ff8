"""Dispatch in the hub: gather the candidates and what the filters and the score read, rank
them (pure, ``realtime/dispatch.py``), and assign through the booking desk.

Candidates are the technicians (on any hub) whose last position is near the destination,
with this hub's own connections. Per candidate: online and free (the fleet, the bookings
mirror), in the booking's city and its service area (the technician's profile city, the
zones at their position), on shift at the booking's time (their shifts in the city's local
time), the platform's rating, and the history score and jobs today from the visit ledger.
The ETA is the customer's (``realtime/travel.py``). Weights are the city's.

One booking (``dispatch``) or a batch (``dispatch_batch``: the city's waiting bookings
matched at once, ``realtime/batch_match.py``). Either way the assignment re-checks "free"
under the technician's store lock, so two dispatches (here or on another hub) never both
win one technician.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from realtime import booking as core
from realtime.backends.roster import Roster
from realtime.batch_match import Matching, greedy_nearest, match
from realtime.booking import Booking, BookingEvent
from realtime.bookings_desk import BookingDesk, Conflict, NotFound
from realtime.cities import Cities
from realtime.city import City, in_service_area
from realtime.dispatch import (
    BookingFacts,
    Candidate,
    Evaluation,
    Excluded,
    Ranked,
    Reason,
    batch_cost,
    evaluate,
)
from realtime.fleet import Fleet
from realtime.history_score import history_score, jobs_today
from realtime.ports import Clock
from realtime.profiles import Profiles, TechnicianProfile
from realtime.shifts import on_shift
from realtime.travel import TravelEstimates
from realtime.visit_ledger import VisitLedger
from realtime.zoning import Zoning

log = logging.getLogger("doorstep.dispatch")

# Dispatch considers the technicians whose last position is this close (Redis GEOSEARCH).
DISPATCH_RADIUS_M = 100_000.0
DISPATCH_LIMIT = 500
# A batch matches at most this many waiting bookings (one assignment problem: 500 x 500
# solves in well under a second).
MAX_BATCH = 500


class NoCandidate(Exception):
    """Dispatch found nobody online, free and skilled for the booking."""


@dataclass(frozen=True)
class BatchResult:
    city: str
    matching: Matching[str, str]
    # What one booking at a time (each to its best-scored free technician, in order of
    # request) would have cost on the same scores, and served: the batch's gain beside it.
    greedy_total_s: float
    greedy_served: int
    # Bookings the matching gave a technician another dispatch took meanwhile.
    taken_meanwhile: list[str]
    scores: dict[tuple[str, str], Ranked]


class Dispatcher:
    def __init__(
        self,
        *,
        bookings: BookingDesk,
        fleet: Fleet,
        profiles: Profiles,
        roster: Roster,
        cities: Cities,
        zoning: Zoning,
        visits: VisitLedger,
        travel: TravelEstimates,
        clock: Clock,
    ) -> None:
        self.bookings = bookings
        self.fleet = fleet
        self.profiles = profiles
        self.roster = roster
        self.cities = cities
        self.zoning = zoning
        self.visits = visits
        self.travel = travel
        self.clock = clock

    # ------------------------------------------------------------------ one booking

    async def ranking(self, booking: Booking) -> Evaluation:
        # A booking created on another hub may name a city this hub has not heard of yet.
        await self.cities.learn(booking.city)
        pool = await self._near([booking])
        return await self._evaluate(booking, *await self._candidates(booking, pool))

    async def dispatch(
        self, booking_id: str, actor: str, *, dry_run: bool
    ) -> tuple[Evaluation, Booking]:
        """Rank candidates and, unless ``dry_run``, assign the best one still free."""
        booking = await self._assignable(booking_id)
        evaluation = await self.ranking(booking)
        ranking = evaluation.ranked
        if dry_run:
            return evaluation, booking
        if not ranking:
            raise NoCandidate(
                f"no online, free technician with skills {list(booking.skills)}, in city "
                f"{self.cities.of(booking.city).id}, on shift and with a recent position"
            )
        for place, best in enumerate(ranking, start=1):
            assigned = await self.bookings.assign_if_free(
                booking_id,
                best.technician_id,
                actor,
                cause=(
                    f"dispatch: score {best.total_s:.0f} s (ETA {best.eta_s:.0f} s),"
                    f" #{place} of {len(ranking)}"
                ),
                ranked_version=booking.updated_t,
            )
            if assigned is not None:
                return evaluation, assigned
        raise NoCandidate(
            f"every technician ranked for booking {booking_id} was taken by another booking"
            " meanwhile"
        )

    # ------------------------------------------------------------------ a batch

    async def dispatch_batch(
        self, city_id: str | None, booking_ids: Sequence[str] | None, actor: str, *, dry_run: bool
    ) -> BatchResult:
        """Match the city's waiting bookings (or the ones named) to free technicians at once."""
        city = self.cities.of(await self.cities.require_fresh(city_id))
        bookings = await self._batch_bookings(city, booking_ids)
        pool = await self._near(bookings)
        scores: dict[tuple[str, str], Ranked] = {}
        for booking in bookings:
            evaluation = await self._evaluate(booking, *await self._candidates(booking, pool))
            for ranked in evaluation.ranked:
                scores[(booking.id, ranked.technician_id)] = ranked
        technicians = sorted({technician for _, technician in scores})
        booking_ids_sorted = [b.id for b in bookings]
        now = self.clock()
        waited = {b.id: now - b.created_t for b in bookings}

        def cost(booking_id: str, technician_id: str) -> float | None:
            ranked = scores.get((booking_id, technician_id))
            if ranked is None:
                return None
            return batch_cost(ranked.total_s, waited[booking_id], city.dispatch)

        matching = match(booking_ids_sorted, technicians, cost)
        greedy = greedy_nearest(booking_ids_sorted, technicians, cost)
        taken: list[str] = []
        if not dry_run:
            version = {b.id: b.updated_t for b in bookings}
            for assignment in matching.assignments:
                ranked = scores[(assignment.booking, assignment.technician)]
                try:
                    assigned = await self.bookings.assign_if_free(
                        assignment.booking,
                        assignment.technician,
                        actor,
                        cause=(
                            f"batch dispatch: score {ranked.total_s:.0f} s"
                            f" (ETA {ranked.eta_s:.0f} s),"
                            f" {len(matching.assignments)} of {len(bookings)} matched"
                        ),
                        ranked_version=version[assignment.booking],
                    )
                except Conflict:
                    assigned = None  # the booking itself was assigned (or cancelled) meanwhile
                if assigned is None:
                    taken.append(assignment.booking)
        greedy_total = sum(scores[(a.booking, a.technician)].total_s for a in greedy.assignments)
        return BatchResult(city.id, matching, greedy_total, len(greedy.assignments), taken, scores)

    async def _batch_bookings(self, city: City, booking_ids: Sequence[str] | None) -> list[Booking]:
        if booking_ids is None:
            waiting = await self.bookings.store.waiting_bookings()
            for city_id in sorted({b.city for b in waiting if b.city is not None}):
                await self.cities.learn(city_id)  # or its bookings count as the default's
            chosen = [b for b in waiting if self.cities.of(b.city).id == city.id]
        else:
            chosen = []
            for booking_id in dict.fromkeys(booking_ids):
                booking = await self._assignable(booking_id)
                await self.cities.learn(booking.city)
                if self.cities.of(booking.city).id != city.id:
                    raise NotFound(f"booking {booking_id} is not in city {city.id}")
                chosen.append(booking)
        # Oldest request first: the order greedy serves them in, and the solver's tie order.
        chosen.sort(key=lambda b: (b.created_t, b.id))
        return chosen[:MAX_BATCH]

    # ------------------------------------------------------------------ the parts

    async def _assignable(self, booking_id: str) -> Booking:
        booking = await self.bookings.get_booking(booking_id)
        if booking is None:
            raise NotFound(f"booking {booking_id} does not exist")
        if (booking.status, BookingEvent.ASSIGN) not in core.TRANSITIONS:
            raise core.IllegalTransition(booking.id, booking.status, BookingEvent.ASSIGN)
        return booking

    async def _near(self, bookings: Iterable[Booking]) -> list[str]:
        """Technicians near any of the bookings (every hub's), and this hub's own."""
        found: set[str] = set(self.fleet.connected_here())
        for booking in bookings:
            destination = booking.destination
            try:
                near = await self.roster.near(
                    destination.lat, destination.lon, DISPATCH_RADIUS_M, DISPATCH_LIMIT
                )
            except Exception:
                log.warning("roster unavailable; dispatching among this hub's own", exc_info=True)
                near = []
            found.update(technician_id for technician_id, _ in near)
        pool = sorted(found)
        await self.fleet.look_around(pool)
        return pool

    async def _candidates(
        self, booking: Booking, pool: Sequence[str]
    ) -> tuple[list[Candidate], list[str]]:
        """The pool as candidates, and the technicians in it with no known position."""
        city = self.cities.of(booking.city)
        zone = city.zone()
        now = self.clock()
        # On shift at the booking's time: its promised window's start, or now.
        at_t = max(now, booking.window_start_t or now)
        located = [(t, self.fleet.last_fix(t)) for t in pool]
        profiles = {t: self.profiles.get(t) or TechnicianProfile() for t in pool}
        for city_id in sorted({p.city for p in profiles.values() if p.city is not None}):
            await self.cities.learn(city_id)
        ledgers = await asyncio.gather(*(self.visits.records(t) for t, fix in located if fix))
        records = dict(zip([t for t, fix in located if fix], ledgers, strict=True))
        candidates, unplaced = [], []
        for technician_id, last in located:
            if last is None:
                unplaced.append(technician_id)
                continue
            profile = profiles[technician_id]
            mine = records[technician_id]
            in_city = self.cities.of(profile.city).id == city.id
            candidates.append(
                Candidate(
                    technician_id,
                    last.lat,
                    last.lon,
                    last.t,
                    frozenset(profile.skills),
                    online=self.fleet.is_online(technician_id),
                    free=not self.bookings.has_other_open(technician_id, booking.id),
                    in_area=in_city
                    and in_service_area(city, self.zoning.ids_at(last.lat, last.lon)),
                    on_shift=on_shift(profile.shifts, at_t, zone),
                    rating=profile.rating,
                    history=history_score(mine) if mine else None,
                    jobs_today=jobs_today(mine, now, zone),
                )
            )
        return candidates, unplaced

    async def _evaluate(
        self, booking: Booking, candidates: list[Candidate], unplaced: list[str]
    ) -> Evaluation:
        city = self.cities.of(booking.city)
        now = self.clock()
        destination = booking.destination
        facts = BookingFacts(
            destination.lat,
            destination.lon,
            frozenset(booking.skills),
            booking.preferred_technician_id,
        )
        # Fairness is measured against the city's technicians at work: online, in the city.
        working = [c.jobs_today for c in candidates if c.online and c.in_area]
        median = statistics.median(working) if working else 0.0
        travel = await self.travel.refine(
            [(c.technician_id, c.lat, c.lon) for c in candidates],
            destination.lat,
            destination.lon,
            now,
        )

        def eta_of(candidate: Candidate) -> tuple[float, float]:
            trip = travel[candidate.technician_id]
            return trip.duration_s, trip.distance_m

        evaluation = evaluate(candidates, facts, eta_of, city.dispatch, median, now)
        if not unplaced:
            return evaluation
        # Known near, but no position at all: cannot be ranked; the dry run says so.
        excluded = [*evaluation.excluded, *(Excluded(t, Reason.STALE_POSITION) for t in unplaced)]
        excluded.sort(key=lambda e: e.technician_id)
        return Evaluation(ranked=evaluation.ranked, excluded=excluded)
