"""Trips for ``doorstep simulate``, ``replay`` and ``demo``: roads from geofence, wire from clients.

This module is where the two meet, as the import rules ask (``clients`` never imports
``geofence``): it turns the synthetic trips of ``geofence/traces.py`` (road-like routes,
lights, jams, GPS noise, tunnels, parking, the visit, leaving) or a recorded GPX/GeoJSON
track into the ready-made fix sequences that ``clients/simulator.py`` streams, and sets up
the bookings and tokens through the platform API, as the platform's backend would.

Synthetic trips are moved to one city centre (each trace comes from one of several cities
on purpose, see ``geofence/traces.py``), so that a whole simulated fleet shares one map.
Network dead zones and SOS presses are drawn here, from the seed, so a seed always gives
the same run; the traces' own GPS gaps (tunnels) stay as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from clients.platform import PlatformClient
from clients.simulator import PlannedFix, SimReport, SimTrip, Simulator, TechnicianReport
from geofence.geo import LocalProjection, distance_m
from geofence.traces import Trace, generate_trip

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
MAX_TOKEN_TTL_S = 30 * 24 * 3600  # the hub's limit on a token's lifetime
# A trace ends a few minutes after the technician leaves; at a speedup that is less of the
# hub's clock than the check-out dwell (180 s) needs, and a phone that falls silent never
# checks out. So simulated technicians stay parked at their next job this long (hub time)
# after their trace ends, reporting every PARKED_FIX_S.
PARKED_HUB_S = 240.0
PARKED_FIX_S = 5.0


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


# ------------------------------------------------------------------ recorded tracks


class TrackError(ValueError):
    """A track file that cannot be replayed; the message says where and why."""


def load_track(path: Path) -> list[PlannedFix]:
    """Fixes from a GPX file (``gpxpy``) or a GeoJSON track, with trip offsets.

    GeoJSON: a LineString/MultiLineString/Point, bare or in a Feature or FeatureCollection,
    with its times (Unix seconds or ISO 8601) in ``properties.times`` (what
    ``GET /v1/technicians/{id}/track`` returns, with ``properties.accuracies``) or
    ``properties.coordTimes``. Without a time on every point, fixes are a steady 1 Hz.
    """
    suffix = path.suffix.lower()
    if suffix not in (".gpx", ".geojson", ".json"):
        raise TrackError(f"{path}: expected a .gpx, .geojson or .json file")
    try:
        if suffix == ".gpx":
            points = _gpx_points(path)
        else:
            points = _geojson_points(json.loads(path.read_text(encoding="utf-8")))
        if not points:
            raise TrackError("no track points")
        return fixes_from_points(points)
    except (OSError, ValueError) as exc:  # TrackError and JSON errors are ValueErrors
        raise TrackError(f"{path}: {exc}") from None


# (time or None, lat, lon, accuracy or None)
_Point = tuple[float | None, float, float, float | None]


def fixes_from_points(points: Sequence[_Point]) -> list[PlannedFix]:
    """Trip offsets from the points' own times, or 1 s apart when any time is missing.

    A point not later than the one before it is dropped: the hub wants fixes in time order.
    """
    for i, (_, lat, lon, _) in enumerate(points):
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise TrackError(f"point {i}: lat/lon {lat}, {lon} are not WGS84 degrees")
    if any(t is None for t, *_ in points):
        return [PlannedFix(float(i), lat, lon, acc) for i, (_, lat, lon, acc) in enumerate(points)]
    t0 = points[0][0]
    assert t0 is not None
    fixes: list[PlannedFix] = []
    for t, lat, lon, acc in points:
        assert t is not None
        if fixes and t - t0 <= fixes[-1].offset_s:
            continue
        fixes.append(PlannedFix(round(t - t0, 3), lat, lon, acc))
    return fixes


def _gpx_points(path: Path) -> list[_Point]:
    import gpxpy
    import gpxpy.gpx

    try:
        with path.open(encoding="utf-8") as handle:
            gpx = gpxpy.parse(handle)
    except gpxpy.gpx.GPXException as exc:
        raise TrackError(f"not a GPX file: {exc}") from None
    # Track points are what a device recorded; a route is only planned, so it is the
    # fallback for files that have nothing else.
    raw: list[Any] = [p for track in gpx.tracks for seg in track.segments for p in seg.points]
    if not raw:
        raw = [p for route in gpx.routes for p in route.points]
    return [
        (
            None if p.time is None else p.time.timestamp(),
            float(p.latitude),
            float(p.longitude),
            _gpx_accuracy(p),
        )
        for p in raw
    ]


def _gpx_accuracy(point: Any) -> float | None:
    # GPX has no accuracy, only dilution of precision; ~5 m per unit of HDOP is the usual
    # rule of thumb for a phone-grade receiver.
    hdop = getattr(point, "horizontal_dilution", None)
    return None if hdop is None else round(min(max(5.0 * float(hdop), 3.0), 1000.0), 1)


def _geojson_points(data: Any) -> list[_Point]:
    if not isinstance(data, dict):
        raise TrackError("GeoJSON must be an object")
    kind = data.get("type")
    if kind == "FeatureCollection":
        points: list[_Point] = []
        for feature in data.get("features") or []:
            points += _geojson_points(feature)
        return points
    properties: dict[str, Any] = {}
    geometry = data
    if kind == "Feature":
        properties = data.get("properties") or {}
        geometry = data.get("geometry") or {}
    gtype = geometry.get("type")
    coords = geometry.get("coordinates")
    if gtype == "Point":
        positions = [coords]
    elif gtype == "LineString":
        positions = list(coords or [])
    elif gtype == "MultiLineString":
        positions = [p for line in coords or [] for p in line]
    else:
        if kind == "Feature" and geometry == {}:
            return []  # an empty track (the track endpoint's answer when there is none)
        raise TrackError(f"unsupported GeoJSON geometry {gtype!r}: expected a LineString")
    times = _flat(properties.get("times", properties.get("coordTimes")))
    accuracies = _flat(properties.get("accuracies"))
    if times is not None and len(times) != len(positions):
        raise TrackError(f"{len(times)} times for {len(positions)} coordinates")
    points = []
    for i, position in enumerate(positions):
        if not isinstance(position, list | tuple) or len(position) < 2:
            raise TrackError(f"coordinate {i} is not [lon, lat]")
        acc = None
        if accuracies is not None and i < len(accuracies) and accuracies[i] is not None:
            acc = float(accuracies[i])
        t = None if times is None else _time(times[i], i)
        points.append((t, float(position[1]), float(position[0]), acc))
    return points


def _flat(values: Any) -> list[Any] | None:
    if values is None:
        return None
    if not isinstance(values, list):
        raise TrackError("times and accuracies must be lists")
    if values and all(isinstance(v, list) for v in values):  # MultiLineString coordTimes
        return [v for part in values for v in part]
    return values


def _time(value: Any, index: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise TrackError(f"time {index} ({value!r}) is neither Unix seconds nor ISO 8601")


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
