"""Runs of the simulator against a hub: book the trips, then play them (simulate, replay).

The set-up goes through the platform API (bookings, tokens, transitions), as the
platform's backend would; the streaming is ``clients/simulator.py``. The trips come from
elsewhere: ``loadtest/sim_trips.py`` plans them from synthetic traces, ``clients/tracks.py``
reads a recorded track.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from clients.platform import PlatformClient
from clients.simulator import PlannedFix, SimReport, SimTrip, Simulator, TechnicianReport
from clients.tracks import TrackError

MAX_TOKEN_TTL_S = 30 * 24 * 3600  # the hub's limit on a token's lifetime


@dataclass(frozen=True)
class TripPlan:
    """One simulated technician's trip to one booking, before the hub knows about it."""

    technician_id: str
    customer_id: str
    booking_id: str
    destination: tuple[float, float]
    radius_m: float
    fixes: list[PlannedFix]
    arrive_at_s: float | None  # trip offset of the real arrival (ground truth)
    visit_s: float | None  # real length of the visit, in trip time
    dead_zones: list[tuple[float, float]] = field(default_factory=list)
    sos_at_s: float | None = None


def token_ttl_s(trips: Sequence[TripPlan] | Sequence[SimTrip], speedup: float) -> int:
    """Long enough for the longest trip at this speed (plus an hour), within the hub's cap."""
    longest = max(
        (t.fixes[-1].offset_s for t in trips if t.fixes),
        default=0.0,
    )
    return int(min(MAX_TOKEN_TTL_S, max(3600, math.ceil(longest / speedup) + 3600)))


async def book_trips(
    platform: PlatformClient, plans: Sequence[TripPlan], *, speedup: float = 1.0
) -> list[SimTrip]:
    """Create each plan's booking (assigned, then en_route) and its technician's token."""
    ttl = token_ttl_s(plans, speedup)
    trips = []
    for plan in plans:
        body: dict[str, Any] = {
            "id": plan.booking_id,
            "customer_id": plan.customer_id,
            "technician_id": plan.technician_id,
            "destination": {"lat": plan.destination[0], "lon": plan.destination[1]},
            "geofence_radius_m": plan.radius_m,
        }
        if plan.visit_s is not None:
            # In hub time, which the speedup compresses too; the watchdog's 15 min margin
            # absorbs the rest. At least a minute: the API's lower bound.
            body["expected_duration_s"] = max(60.0, math.ceil(plan.visit_s / speedup))
        await platform.create_booking(**body)
        token = await platform.token("technician", plan.technician_id, ttl_s=ttl)
        await platform.transition(plan.booking_id, "en_route")
        trips.append(
            SimTrip(
                technician_id=plan.technician_id,
                token=token,
                fixes=plan.fixes,
                booking_id=plan.booking_id,
                dead_zones=plan.dead_zones,
                sos_at_s=plan.sos_at_s,
            )
        )
    return trips


def planned_within(
    trips: Sequence[TripPlan] | Sequence[SimTrip], speedup: float, duration_s: float | None
) -> int:
    """How many fixes a run will send: all, or those due within ``duration_s``."""
    if duration_s is None:
        return sum(len(t.fixes) for t in trips)
    limit = duration_s * speedup
    return sum(1 for t in trips for f in t.fixes if f.offset_s <= limit)


async def simulate(
    hub_url: str,
    platform_key: str,
    plans: Sequence[TripPlan],
    *,
    speedup: float = 1.0,
    duration_s: float | None = None,
    on_ready: Callable[[list[SimTrip]], None] | None = None,
    on_fix: Callable[[TechnicianReport], None] | None = None,
) -> SimReport:
    """Book ``plans`` on the hub and play them (``doorstep simulate``)."""
    async with PlatformClient(hub_url, platform_key) as platform:
        trips = await book_trips(platform, plans, speedup=speedup)
    if on_ready is not None:
        on_ready(trips)
    simulator = Simulator(hub_url, trips, speedup=speedup, on_fix=on_fix)
    with stop_on_signals(simulator.stop):
        return await simulator.run(duration_s)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Ctrl-C (and SIGTERM) call ``stop`` instead of tearing through the event loop, so a
    run ends the way its duration would end it: flushed, closed and reported."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def replay(
    hub_url: str,
    platform_key: str,
    fixes: Sequence[PlannedFix],
    technician_id: str,
    *,
    speedup: float = 1.0,
    booking_id: str | None = None,
    on_fix: Callable[[TechnicianReport], None] | None = None,
) -> SimReport:
    """Stream a recorded track as ``technician_id`` (``doorstep replay``).

    With ``booking_id`` the booking is first given to this technician and set en_route (as
    far as its state allows), so that its customer watches the replay.
    """
    trip = SimTrip(technician_id=technician_id, token="", fixes=fixes, booking_id=booking_id)
    async with PlatformClient(hub_url, platform_key) as platform:
        if booking_id is not None:
            await _take_booking(platform, booking_id, technician_id)
        token = await platform.token(
            "technician", technician_id, ttl_s=token_ttl_s([trip], speedup)
        )
    simulator = Simulator(hub_url, [replace(trip, token=token)], speedup=speedup, on_fix=on_fix)
    with stop_on_signals(simulator.stop):
        return await simulator.run()


async def _take_booking(platform: PlatformClient, booking_id: str, technician_id: str) -> None:
    booking = await platform.booking(booking_id)
    status = booking["status"]
    if status in ("requested", "assigned") and booking.get("technician_id") != technician_id:
        booking = await platform.transition(booking_id, "assign", {"technician_id": technician_id})
        status = booking["status"]
    if booking.get("technician_id") != technician_id or status in ("completed", "cancelled"):
        raise TrackError(
            f"booking {booking_id} is {status} with technician "
            f"{booking.get('technician_id')}: it cannot take a replay as {technician_id}"
        )
    if status == "assigned":
        await platform.transition(booking_id, "en_route", {"cause": "replay"})
