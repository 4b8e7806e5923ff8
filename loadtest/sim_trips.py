"""Trips for ``doorstep simulate`` and ``demo``, made from the synthetic trace generator.

It turns the synthetic trips of ``loadtest/traces.py`` (road-like routes, lights, jams, GPS
noise, tunnels, parking, the visit, leaving) into the ready-made fix sequences that
``clients/simulator.py`` streams (``clients/sim_runs.py`` books and plays them).

Synthetic trips are moved to one city centre (each trace comes from one of several cities
on purpose, see ``loadtest/traces.py``), so that a whole simulated fleet shares one map.
Network dead zones and SOS presses are drawn here, from the seed, so a seed always gives
the same run; the traces' own GPS gaps (tunnels) stay as they are.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from clients.sim_runs import TripPlan
from clients.simulator import PlannedFix
from geofence.geo import LocalProjection, distance_m
from loadtest.traces import Trace, generate_trip

# Brandenburg Gate-ish: the README's examples use it too.
DEFAULT_CENTRE = (52.5200, 13.4050)
# Every simulated technician is driving to a booking, so no drive-pasts (trips that pass
# the door and never stop: they exist to test the presence detector, not to watch).
SIM_MIX = {"normal": 0.6, "park_walk": 0.3, "overshoot": 0.1}
# Network dead zones while driving: a tunnel, an underpass, a block without coverage.
DEAD_ZONES_PER_TRIP = (1, 2)
DEAD_ZONE_S = (20.0, 90.0)
# When an SOS is pressed, as a fraction of the drive to the door: on the way, so that the
# operator sees it with a moving position.
SOS_WINDOW = (0.05, 0.5)
# A trace ends a few minutes after the technician leaves; at a speedup that is less of the
# hub's clock than the check-out dwell (180 s) needs, and a phone that falls silent never
# checks out. So simulated technicians stay parked at their next job this long (hub time)
# after their trace ends, reporting every PARKED_FIX_S.
PARKED_HUB_S = 240.0
PARKED_FIX_S = 5.0


def plan_trips(
    count: int,
    seed: int = 0,
    *,
    run_id: str,
    centre: tuple[float, float] = DEFAULT_CENTRE,
    spread_m: float = 3000.0,
    dead_zones: bool = True,
    sos_rate: float = 0.0,
    start_within_m: float | None = None,
    max_visit_s: float | None = None,
    park_after_s: float = 0.0,
) -> list[TripPlan]:
    """``count`` trips to destinations within ``spread_m`` of ``centre``; ``seed`` decides all.

    ``start_within_m`` starts each technician already on the way, at the first fix within
    that distance of the door (a demo wants arrivals in minutes, not half an hour);
    ``max_visit_s`` shortens the 30-90 minute visits by cutting out their middle;
    ``park_after_s`` (trip time) keeps the technician parked where the trace ends (see
    ``PARKED_HUB_S``: pass ``PARKED_HUB_S * speedup``).
    ``run_id`` goes into every id, so runs against one hub do not collide.
    """
    if not 0.0 <= sos_rate <= 1.0:
        raise ValueError(f"sos rate must be between 0 and 1, not {sos_rate}")
    plans = []
    for k in range(count):
        trace = generate_trip(k, seed, mix=SIM_MIX)
        rng = random.Random(f"doorstep-sim:{seed}:{k}")
        # Drawn in a fixed order whatever the options, so that turning dead zones off does
        # not move the destinations or the SOS presses.
        bearing = rng.uniform(0.0, 2 * math.pi)
        reach = spread_m * math.sqrt(rng.random())  # uniform over the disc
        zone_draws = [(rng.random(), rng.random()) for _ in range(DEAD_ZONES_PER_TRIP[1])]
        zone_count = rng.randint(*DEAD_ZONES_PER_TRIP)
        sos_draw, sos_where = rng.random(), rng.uniform(*SOS_WINDOW)

        dest = _offset(centre, reach * math.sin(bearing), reach * math.cos(bearing))
        fixes, arrive, visit = relocate(trace, dest)
        if start_within_m is not None:
            fixes, arrive = _start_near(fixes, arrive, dest, start_within_m)
        if max_visit_s is not None and arrive is not None and visit is not None:
            fixes, visit = _shorten_visit(fixes, arrive, visit, max_visit_s)
        fixes = _park(fixes, park_after_s)
        drive_s = arrive if arrive is not None else (fixes[-1].offset_s if fixes else 0.0)
        zones = _dead_zones(zone_draws[:zone_count], drive_s) if dead_zones else []
        n = k + 1
        plans.append(
            TripPlan(
                technician_id=f"t-{run_id}-{n}",
                customer_id=f"c-{run_id}-{n}",
                booking_id=f"b-{run_id}-{n}",
                destination=dest,
                radius_m=trace.truth.radius_m,
                fixes=fixes,
                arrive_at_s=arrive,
                visit_s=visit,
                dead_zones=zones,
                sos_at_s=sos_where * drive_s if sos_draw < sos_rate else None,
            )
        )
    return plans


def relocate(
    trace: Trace, dest: tuple[float, float]
) -> tuple[list[PlannedFix], float | None, float | None]:
    """The trace's fixes moved so that its destination is ``dest``, with trip offsets.

    Distances and bearings from the destination are kept exactly (both ends go through a
    local projection centred on their destination). Returns the fixes, the arrival's offset
    and the visit's length (None on a trip without a visit).
    """
    truth = trace.truth
    if not trace.fixes:
        return [], None, None
    old = LocalProjection(truth.dest_lat, truth.dest_lon)
    new = LocalProjection(*dest)
    ox, oy = old.to_xy(truth.dest_lat, truth.dest_lon)
    nx, ny = new.to_xy(*dest)
    t0 = trace.fixes[0].t
    fixes = []
    for fix in trace.fixes:
        x, y = old.to_xy(fix.lat, fix.lon)
        lat, lon = new.to_latlon(x - ox + nx, y - oy + ny)
        fixes.append(
            PlannedFix(
                round(fix.t - t0, 3),
                round(lat, 7),
                round(lon, 7),
                fix.acc,
                fix.speed,
                fix.heading,
            )
        )
    arrive = None if truth.arrived_t is None else truth.arrived_t - t0
    visit = None
    if truth.arrived_t is not None and truth.departed_t is not None:
        visit = truth.departed_t - truth.arrived_t
    return fixes, arrive, visit


def _offset(origin: tuple[float, float], east_m: float, north_m: float) -> tuple[float, float]:
    proj = LocalProjection(*origin)
    x, y = proj.to_xy(*origin)
    lat, lon = proj.to_latlon(x + east_m, y + north_m)
    return round(lat, 6), round(lon, 6)


def _start_near(
    fixes: list[PlannedFix], arrive: float | None, dest: tuple[float, float], within_m: float
) -> tuple[list[PlannedFix], float | None]:
    first = next((i for i, f in enumerate(fixes) if distance_m(f.lat, f.lon, *dest) <= within_m), 0)
    if first == 0:
        return fixes, arrive
    shift = fixes[first].offset_s
    moved = [f._replace(offset_s=round(f.offset_s - shift, 3)) for f in fixes[first:]]
    return moved, None if arrive is None else max(0.0, arrive - shift)


def _shorten_visit(
    fixes: list[PlannedFix], arrive: float, visit: float, max_visit_s: float
) -> tuple[list[PlannedFix], float]:
    """Cut the middle of the visit: keep its first and last ``max_visit_s / 2`` seconds."""
    if visit <= max_visit_s:
        return fixes, visit
    cut_from = arrive + max_visit_s / 2
    cut_to = arrive + visit - max_visit_s / 2
    gap = cut_to - cut_from
    kept = []
    for fix in fixes:
        if fix.offset_s <= cut_from:
            kept.append(fix)
        elif fix.offset_s >= cut_to:
            kept.append(fix._replace(offset_s=round(fix.offset_s - gap, 3)))
    return kept, max_visit_s


def _park(fixes: list[PlannedFix], for_s: float) -> list[PlannedFix]:
    """Stand still where the trip ends for ``for_s`` more seconds (a phone in a parked car)."""
    if not fixes or for_s <= 0:
        return fixes
    last = fixes[-1]
    speed = None if last.speed is None else 0.0
    steps = math.floor(for_s / PARKED_FIX_S)
    tail = [
        PlannedFix(round(last.offset_s + k * PARKED_FIX_S, 3), last.lat, last.lon, last.acc, speed)
        for k in range(1, steps + 1)
    ]
    return fixes + tail


def _dead_zones(draws: Sequence[tuple[float, float]], drive_s: float) -> list[tuple[float, float]]:
    """Dead zones placed by ``draws`` within 10-80 % of the drive; overlapping ones merge."""
    zones = []
    for where, length in draws:
        start = drive_s * (0.1 + 0.7 * where)
        low, high = DEAD_ZONE_S
        zones.append((round(start, 1), round(start + low + length * (high - low), 1)))
    zones.sort()
    merged: list[tuple[float, float]] = []
    for start, end in zones:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
