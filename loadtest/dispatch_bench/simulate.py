"""One policy through one simulated day: a discrete-event loop, pure (time is a float).

Events, in time order; at the same second a technician freeing up comes first, then a shift
starting, then a booking arriving, then a batch tick, so a decision at that second sees all
of them. After each second that had an event, a one-at-a-time policy is asked (if anything
waits and anyone is free); a batch policy only at its ticks (every W s from the first shift
start).

A technician given a booking drives there at once (the noiseless travel time of the world),
works for the booking's duration and is then free at the customer's place: they do not go
home. A job may run past the technician's shift end (they finish what they started); they
only take new bookings while on shift. At ``World.day_end_t`` dispatch stops and what still
waits is unserved.

Every decision is checked before it is applied: a policy that hands out a booking twice,
gives a busy, off-shift or unskilled technician a job, or names an unknown booking is a bug
and raises ValueError, so the benchmark cannot report numbers from an impossible day.
"""

from __future__ import annotations

import heapq

import msgspec

from loadtest.dispatch_bench.policies import Pair, Policy, TechState
from loadtest.dispatch_bench.world import Booking, Point, World

# Same-second order of events (see the module's docstring).
_FREE, _SHIFT, _ARRIVAL, _TICK = 0, 1, 2, 3


class Job(msgspec.Struct, frozen=True):
    """One booking served: who, when they set off, arrived and finished, how far they drove."""

    booking_id: str
    technician_id: str
    assigned_t: float
    arrival_t: float
    end_t: float
    drive_km: float
    wait_s: float  # request to arrival


class DayRun(msgspec.Struct, frozen=True):
    policy: str
    jobs: tuple[Job, ...]  # in the order they were assigned
    unserved: tuple[str, ...]  # booking ids, in request order
    decisions: int  # times the policy was asked


def simulate(world: World, policy: Policy) -> DayRun:
    """Replay ``world`` under ``policy``; the same inputs give the same run."""
    techs = {t.id: t for t in world.technicians}
    bookings = {b.id: b for b in world.bookings}
    position: dict[str, Point] = {t.id: t.home for t in world.technicians}
    free: dict[str, bool] = {t.id: True for t in world.technicians}
    jobs_today: dict[str, int] = dict.fromkeys(techs, 0)
    waiting: dict[str, Booking] = {}  # insertion order = request order
    jobs: list[Job] = []
    decisions = 0

    events: list[tuple[float, int, int, str]] = []
    seq = 0

    def push(t: float, kind: int, ref: str) -> None:
        nonlocal seq
        heapq.heappush(events, (t, kind, seq, ref))
        seq += 1

    for booking in world.bookings:
        push(booking.request_t, _ARRIVAL, booking.id)
    for tech in world.technicians:
        push(tech.shift_start_t, _SHIFT, tech.id)
    interval = policy.batch_interval_s
    if interval is not None and world.technicians:
        tick = min(t.shift_start_t for t in world.technicians)
        while tick < world.day_end_t:
            push(tick, _TICK, "")
            tick += interval

    while events and events[0][0] < world.day_end_t:
        now = events[0][0]
        ticked = False
        while events and events[0][0] == now:
            _, kind, _, ref = heapq.heappop(events)
            if kind == _FREE:
                free[ref] = True
            elif kind == _ARRIVAL:
                waiting[ref] = bookings[ref]
            elif kind == _TICK:
                ticked = True
        if interval is not None and not ticked:
            continue
        if not waiting or not any(free[t] and techs[t].on_shift(now) for t in techs):
            continue
        states = [
            TechState(
                technician=t, position=position[t.id], free=free[t.id], jobs_today=jobs_today[t.id]
            )
            for t in world.technicians
        ]
        decisions += 1
        pairs = policy.decide(world, now, list(waiting.values()), states)
        _check(world, now, pairs, waiting, free)
        for booking_id, tech_id in pairs:
            booking = waiting.pop(booking_id)
            origin = position[tech_id]
            arrival = now + world.travel.travel_s(origin, booking.location, now)
            end = arrival + booking.duration_s
            jobs.append(
                Job(
                    booking_id=booking_id,
                    technician_id=tech_id,
                    assigned_t=now,
                    arrival_t=arrival,
                    end_t=end,
                    drive_km=world.travel.road_km(origin, booking.location),
                    wait_s=arrival - booking.request_t,
                )
            )
            free[tech_id] = False
            position[tech_id] = booking.location
            jobs_today[tech_id] += 1
            push(end, _FREE, tech_id)

    return DayRun(
        policy=policy.name, jobs=tuple(jobs), unserved=tuple(waiting), decisions=decisions
    )


def _check(
    world: World, now: float, pairs: list[Pair], waiting: dict[str, Booking], free: dict[str, bool]
) -> None:
    techs = {t.id: t for t in world.technicians}
    seen_bookings: set[str] = set()
    seen_techs: set[str] = set()
    for booking_id, tech_id in pairs:
        if booking_id not in waiting or booking_id in seen_bookings:
            raise ValueError(f"policy assigned booking {booking_id}, which is not waiting")
        if tech_id not in techs:
            raise ValueError(f"policy assigned unknown technician {tech_id}")
        tech = techs[tech_id]
        if not free[tech_id] or tech_id in seen_techs:
            raise ValueError(f"policy gave {booking_id} to {tech_id}, who is busy")
        if not tech.on_shift(now):
            raise ValueError(f"policy gave {booking_id} to {tech_id}, who is off shift at {now}")
        if waiting[booking_id].skill not in tech.skills:
            raise ValueError(f"policy gave {booking_id} to {tech_id}, who lacks the skill")
        seen_bookings.add(booking_id)
        seen_techs.add(tech_id)
