"""Dispatch in the hub: find the candidates, rank them (pure, ``realtime/dispatch.py``),
assign the best one that is still free through the booking desk.

Candidates are the technicians (on any hub) with a fix near the destination, found with the
roster's GEO search; the pure core filters out the offline, the busy, the unskilled and the
stale. Until cities, shifts, ratings and histories are wired in, every candidate counts as
in the area, on shift, unrated, with no history and no jobs today, so the ranking is by ETA.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from geofence.eta import RouteProvider
from realtime import booking as core
from realtime.backends.roster import Roster
from realtime.booking import Booking, BookingEvent
from realtime.bookings_desk import BookingDesk, NotFound
from realtime.dispatch import BookingFacts, Candidate, Ranked, evaluate, route_eta
from realtime.dispatch_weights import DEFAULT_WEIGHTS
from realtime.fleet import Fleet
from realtime.ports import Clock
from realtime.profiles import Profiles, TechnicianProfile

log = logging.getLogger("doorstep.dispatch")

# Dispatch considers the technicians whose last position is this close (Redis GEOSEARCH).
DISPATCH_RADIUS_M = 100_000.0
DISPATCH_LIMIT = 500


class NoCandidate(Exception):
    """Dispatch found nobody online, free and skilled for the booking."""


class Dispatcher:
    def __init__(
        self,
        *,
        bookings: BookingDesk,
        fleet: Fleet,
        profiles: Profiles,
        roster: Roster,
        provider: Callable[[], RouteProvider],
        clock: Clock,
    ) -> None:
        self.bookings = bookings
        self.fleet = fleet
        self.profiles = profiles
        self.roster = roster
        # The ETA the customer would be shown (the learned circuity, read when ranking).
        self.provider = provider
        self.clock = clock

    async def ranking(self, booking: Booking) -> list[Ranked]:
        destination = booking.destination
        try:
            near = await self.roster.near(
                destination.lat, destination.lon, DISPATCH_RADIUS_M, DISPATCH_LIMIT
            )
        except Exception:
            log.warning("roster unavailable; dispatching among this hub's own", exc_info=True)
            near = []
        await self.fleet.look_around([technician_id for technician_id, _ in near])
        considered = {technician_id for technician_id, _ in near} | set(self.fleet.connected_here())
        candidates = []
        for technician_id in sorted(considered):
            last = self.fleet.last_fix(technician_id)
            if last is None:
                continue
            profile = self.profiles.get(technician_id) or TechnicianProfile()
            candidates.append(
                Candidate(
                    technician_id,
                    last.lat,
                    last.lon,
                    last.t,
                    frozenset(profile.skills),
                    online=self.fleet.is_online(technician_id),
                    free=not self.bookings.has_other_open(technician_id, booking.id),
                    in_area=True,
                    on_shift=True,
                    rating=None,
                    history=None,
                    jobs_today=0,
                )
            )
        facts = BookingFacts(destination.lat, destination.lon, frozenset(booking.skills))
        now = self.clock()
        evaluation = evaluate(
            candidates,
            facts,
            route_eta(self.provider(), facts, now),
            DEFAULT_WEIGHTS,
            city_median_jobs=0.0,
            now=now,
        )
        return evaluation.ranked

    async def dispatch(
        self, booking_id: str, actor: str, *, dry_run: bool
    ) -> tuple[list[Ranked], Booking]:
        """Rank candidates and, unless ``dry_run``, assign the best one still free."""
        booking = await self.bookings.get_booking(booking_id)
        if booking is None:
            raise NotFound(f"booking {booking_id} does not exist")
        if (booking.status, BookingEvent.ASSIGN) not in core.TRANSITIONS:
            raise core.IllegalTransition(booking.id, booking.status, BookingEvent.ASSIGN)
        ranking = await self.ranking(booking)
        if dry_run:
            return ranking, booking
        if not ranking:
            raise NoCandidate(
                f"no online, free technician with skills {list(booking.skills)} "
                "and a recent position"
            )
        for place, best in enumerate(ranking, start=1):
            assigned = await self.bookings.assign_if_free(
                booking_id,
                best.technician_id,
                actor,
                cause=f"dispatch: ETA {best.eta_s:.0f} s, #{place} of {len(ranking)}",
            )
            if assigned is not None:
                return ranking, assigned
        raise NoCandidate(
            f"every technician ranked for booking {booking_id} was taken by another booking"
            " meanwhile"
        )
