"""Synthetic technician trips with ground truth, for the arrival evaluation.

Why synthetic: recorded traces with a trustworthy "entered the fence at t" are rare, and the
cases that break presence detectors and ETAs (a red light next to the customer's door, a
tunnel, a 200-800 m jump while indoors, parking round the corner) must appear in every run,
with known seeds. SUMO (``eclipse-sumo``) does install and run offline, but it is a 148 MB
wheel plus a network/route toolchain, for what a one-car kinematic model gives here: stop-go
at lights, congestion, acceleration limits, slowing for turns.

The model, in metres on a local plane centred on the destination (exact distances from it):

- the road is a Manhattan-like grid turned by a random angle; a route is a staircase of
  straight legs from a start 2-15 km away, padded with a detour so that its length is
  1.2-1.5x the straight line, ending with a side-street approach past the customer's house;
- the car accelerates (1-2 m/s2), cruises 8-14 m/s on arterials and 5-8 m/s on side
  streets, brakes (2 m/s2) for 90-degree turns and at lights (one every 300-800 m, half of
  them red for 0-60 s), and on 45 % of trips crawls stop-and-go at a mean 2-4 m/s through
  one or two congested stretches of 0.5-2.5 km (minutes each);
- the technician sits in the car 10-90 s, walks to the door at 1.1-1.5 m/s from 0-140 m
  away, stays 30-90 minutes indoors, walks back, sits in the car again and drives away;
  fences are 75 m (70 %), 50 m or 100 m;
- the phone reports 1 fix/s outdoors (jitter 5-15 m, correlated over seconds), one per 5 s or
  1 s indoors (20-50 m, correlated over minutes, sometimes dozing for 2-10 min), rare single
  200-800 m outliers of which half still claim a good accuracy, nothing in tunnels
  (30-120 s, on 30 % of trips), coarse fixes just after a gap; 15 % of phones send no
  speed/heading and 5 % no accuracy.

Everything comes from ``random.Random`` seeded per trip, so trip ``k`` of seed ``s`` is the
same on every machine and does not change when more trips are asked for. No I/O here.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import pairwise

from geofence.geo import LocalProjection
from geofence.model import Fix

KINDS = ("normal", "park_walk", "overshoot", "drive_past")
"""normal: park 0-60 m away. park_walk: park 60-140 m away and walk in (often from outside
the fence). overshoot: drive past the house, loop round the block, come back and park.
drive_past: pass the door (sometimes waiting at a red light next to it) and never stop."""

DEFAULT_MIX: dict[str, float] = {
    "normal": 0.45,
    "park_walk": 0.25,
    "overshoot": 0.1,
    "drive_past": 0.2,
}

# Destinations are spread over cities at different latitudes and hemispheres (Berlin, Oslo,
# Singapore, Sao Paulo, New York) so degree/metre mistakes show up in the numbers.
CITIES: tuple[tuple[float, float], ...] = (
    (52.5200, 13.4050),
    (59.9139, 10.7522),
    (1.2903, 103.8519),
    (-23.5505, -46.6333),
    (40.7484, -73.9857),
)
EPOCH = 1_741_000_000.0  # 2025-03-03; trips start TRIP_SPACING_S apart, so they overlap.
TRIP_SPACING_S = 600.0
FENCE_RADII_M = ((75.0, 0.7), (100.0, 0.15), (50.0, 0.15))

SIGMA_PER_ACC = 1.0 / math.sqrt(-2.0 * math.log(1.0 - 0.68))  # per-axis sigma for a 68 % radius
BRAKE = 2.0  # m/s2, comfortable braking used to plan stops and turns
MAX_DECEL = 3.0  # m/s2, when the wanted speed drops (entering a jam)
# Single 200-800 m jumps (a cell or Wi-Fi fallback fix), per hour: rare on the road, a bit
# commoner indoors where the phone has no sky view.
OUTLIERS_PER_H = 1.0
OUTLIERS_PER_H_INDOOR = 1.5


@dataclass(frozen=True)
class TripTruth:
    """What really happened on one trip. ``arrived_t``/``departed_t`` are None on a drive-past.

    ``arrived_t`` is when the technician (in the car or on foot) crossed into the fence for
    the visit, ``departed_t`` when they crossed out of it afterwards; an earlier pass through
    the fence (overshoot, drive-past) is not an arrival.
    """

    trip_id: str
    kind: str
    dest_lat: float
    dest_lon: float
    radius_m: float
    start_t: float
    arrived_t: float | None
    departed_t: float | None
    route_m: float
    straight_m: float
    park_m: float | None
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """The TRIPS.json entry: the documented fields plus ``kind``/``tags`` for breakdowns."""
        return {
            "trip_id": self.trip_id,
            "destination": {"lat": self.dest_lat, "lon": self.dest_lon},
            "geofence_radius_m": self.radius_m,
            "arrived_t": self.arrived_t,
            "departed_t": self.departed_t,
            "kind": self.kind,
            "tags": list(self.tags),
        }


@dataclass(frozen=True)
class Trace:
    """One trip: its truth and the fixes a phone would have sent, in time order.

    ``true_positions[i]`` is where the phone really was at ``fixes[i]`` (lat, lon), to
    measure the noise and to check detectors fix by fix.
    """

    truth: TripTruth
    fixes: list[Fix]
    true_positions: list[tuple[float, float]]
    # The road a routing engine would send the technician along, (lat, lon) from the start
    # to the street in front of the door: the streets of this trip's grid, including the
    # detour they force, but none of the traffic, lights, jams, parking, walking or the
    # driver's mistakes (an overshoot's loop round the block). See ``geofence/roads.py``.
    route: tuple[tuple[float, float], ...] = ()
    # Truth no phone reports, for oracle studies (``loadtest/eta_bound.py``); never written to
    # FIXES.jsonl/TRIPS.json. One entry per fix when set; computed without drawing from the
    # trip's random stream, so the fixes are the same with or without them.
    # ``phases[i]``: "drive" (true speed > 0.5 m/s), "light" (driving but stopped or nearly:
    # a red light, a jam, the final stop), "car" (sitting in the parked car), "walk", "indoor".
    phases: tuple[str, ...] = ()
    # ``free_flow_left_s[i]``: seconds left along the approach road at each street's cruise
    # speed (no lights, jams, turns or acceleration) from the true position to where the car
    # stops (the end of a drive-past's road); ``route_left_m[i]``: the metres left. None
    # after the car's final stop on the approach (sitting, walking, indoors, driving away).
    free_flow_left_s: tuple[float | None, ...] = ()
    route_left_m: tuple[float | None, ...] = ()
    # ``free_flow_to_fence_s[i]``: the same seconds, but only to where the approach road last
    # enters the fence (the arrival, when the car parks inside it); 0 on the road inside;
    # equal to ``free_flow_left_s`` when the car parks outside the fence. None when that is.
    free_flow_to_fence_s: tuple[float | None, ...] = ()


def fix_to_dict(trip_id: str, fix: Fix) -> dict[str, object]:
    """One FIXES.jsonl line; optional fields are left out when the phone did not send them."""
    out: dict[str, object] = {"trip_id": trip_id, "t": fix.t, "lat": fix.lat, "lon": fix.lon}
    for name in ("acc", "speed", "heading"):
        value = getattr(fix, name)
        if value is not None:
            out[name] = value
    return out


def generate(
    n: int, seed: int = 0, mix: dict[str, float] | None = None, epoch: float = EPOCH
) -> list[Trace]:
    """``n`` trips, kinds drawn from ``mix``; trip ``k`` depends only on (seed, k)."""
    return [generate_trip(k, seed, mix=mix, epoch=epoch) for k in range(n)]


def generate_trip(
    index: int,
    seed: int = 0,
    kind: str | None = None,
    mix: dict[str, float] | None = None,
    epoch: float = EPOCH,
) -> Trace:
    """Trip number ``index`` of ``seed``; ``kind`` forces a kind instead of drawing one."""
    # A string seed is hashed with SHA-512 by random.Random: stable across runs and machines.
    rng = random.Random(f"doorstep-trace:{seed}:{index}")
    weights = mix or DEFAULT_MIX
    drawn = rng.choices(list(weights), weights=list(weights.values()))[0]
    kind = kind or drawn
    if kind not in KINDS:
        raise ValueError(f"unknown trip kind {kind!r}; expected one of {KINDS}")
    start_t = round(epoch + index * TRIP_SPACING_S + rng.uniform(0, TRIP_SPACING_S), 3)
    return _Trip(rng, f"trip-{seed}-{index:04d}", kind, start_t).build()


# --- road geometry ---------------------------------------------------------------------


@dataclass
class _Line:
    """A polyline in metres with a cruise speed per segment and a turn speed per corner."""

    points: list[tuple[float, float]]
    cruise: list[float]
    turn_speed: list[float]
    cum: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.cum = [0.0]
        for (x0, y0), (x1, y1) in pairwise(self.points):
            self.cum.append(self.cum[-1] + math.hypot(x1 - x0, y1 - y0))

    @property
    def length(self) -> float:
        return self.cum[-1]

    def segment(self, s: float) -> int:
        return min(max(bisect_right(self.cum, s) - 1, 0), len(self.points) - 2)

    def at(self, s: float) -> tuple[float, float, float]:
        """Position and compass heading (degrees) at arc length ``s``."""
        i = self.segment(s)
        (x0, y0), (x1, y1) = self.points[i], self.points[i + 1]
        seg = self.cum[i + 1] - self.cum[i] or 1.0
        f = min(max((s - self.cum[i]) / seg, 0.0), 1.0)
        heading = math.degrees(math.atan2(x1 - x0, y1 - y0)) % 360.0
        return x0 + f * (x1 - x0), y0 + f * (y1 - y0), heading

    def corners(self) -> list[tuple[float, float]]:
        """(arc length, speed limit) of every interior vertex."""
        return list(zip(self.cum[1:-1], self.turn_speed, strict=False))

    def _project(self, i: int, x: float, y: float) -> tuple[float, float]:
        """(arc length, distance) of the point of segment ``i`` nearest to (x, y)."""
        (x0, y0), (x1, y1) = self.points[i], self.points[i + 1]
        dx, dy = x1 - x0, y1 - y0
        seg2 = dx * dx + dy * dy or 1.0
        f = min(max(((x - x0) * dx + (y - y0) * dy) / seg2, 0.0), 1.0)
        return self.cum[i] + f * math.sqrt(seg2), math.hypot(x0 + f * dx - x, y0 + f * dy - y)

    def s_nearest(self, x: float, y: float) -> float:
        """Arc length of the point of the line nearest to (x, y)."""
        best, best_d = 0.0, math.inf
        for i in range(len(self.points) - 1):
            s, d = self._project(i, x, y)
            if d < best_d:
                best, best_d = s, d
        return best

    def s_forward(self, x: float, y: float, first: int) -> float:
        """Arc length of (x, y), a point on the line at or after segment ``first``.

        The first such segment the point lies on (within 1 mm), else the nearest one from
        ``first`` on. Unlike ``s_nearest`` this follows a car that drives the same street
        twice (an overshoot's loop round the block) and is O(1) while it stays on a segment.
        """
        best, best_d = self.cum[first], math.inf
        for i in range(first, len(self.points) - 1):
            s, d = self._project(i, x, y)
            if d < best_d:
                best, best_d = s, d
            if d < 1e-3:
                break
        return best

    def last_entry(self, radius: float) -> float:
        """Arc length where the line last enters the circle of ``radius`` round the origin
        (the destination) and stays inside to its end; the end if it ends outside."""
        if math.hypot(*self.points[-1]) > radius:
            return self.length
        for i in range(len(self.points) - 2, -1, -1):
            (x0, y0), (x1, y1) = self.points[i], self.points[i + 1]
            if math.hypot(x0, y0) <= radius:
                continue
            # Enters on this segment: |p0 + f (p1 - p0)| = radius, the root in [0, 1].
            dx, dy = x1 - x0, y1 - y0
            a, b, c = dx * dx + dy * dy, 2 * (x0 * dx + y0 * dy), x0 * x0 + y0 * y0 - radius**2
            root = (-b - math.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a) if a else 1.0
            return self.cum[i] + min(max(root, 0.0), 1.0) * (self.cum[i + 1] - self.cum[i])
        return 0.0

    def free_flow_s(self) -> list[float]:
        """Seconds from the start of each segment to the end of the line at cruise speeds."""
        out = [0.0] * len(self.cruise)
        left = 0.0
        for i in range(len(self.cruise) - 1, -1, -1):
            left += (self.cum[i + 1] - self.cum[i]) / self.cruise[i]
            out[i] = left
        return out


def _simplify(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Drop repeated and collinear vertices (legs of zero length, straight-on 'turns')."""
    out: list[tuple[float, float]] = []
    for p in points:
        if out and math.hypot(p[0] - out[-1][0], p[1] - out[-1][1]) < 1.0:
            continue
        if len(out) >= 2:
            (ax, ay), (bx, by) = out[-2], out[-1]
            cross = (bx - ax) * (p[1] - by) - (by - ay) * (p[0] - bx)
            dot = (bx - ax) * (p[0] - bx) + (by - ay) * (p[1] - by)
            if abs(cross) < 1e-6 * max(1.0, math.hypot(bx - ax, by - ay)) and dot > 0:
                out[-1] = p
                continue
        out.append(p)
    return out


def _split(total: float, parts: int, rng: random.Random) -> list[float]:
    weights = [rng.uniform(0.3, 1.0) for _ in range(parts)]
    scale = total / sum(weights)
    return [w * scale for w in weights]


def _staircase(
    rng: random.Random, start: tuple[float, float], end: tuple[float, float], extra: float
) -> list[tuple[float, float]]:
    """Grid points (u, v) from start to end, arriving along v, ``extra`` m longer than L1.

    The extra length is a detour in u: the u legs overshoot by extra/2 and the last one comes
    back, which is what a route round a park, a river or a one-way system looks like.
    """
    du, dv = end[0] - start[0], end[1] - start[1]
    n_v = rng.randint(2, 3) if extra > 0 else rng.randint(1, 3)
    n_u = n_v if (extra > 0 or rng.random() < 0.5) else max(n_v - 1, 1)
    vs = _split(dv, n_v, rng)
    if extra > 0:
        side = math.copysign(1.0, du) if abs(du) > 1 else rng.choice((-1.0, 1.0))
        us = [*_split(du + side * extra / 2, n_u - 1, rng), -side * extra / 2]
    else:
        us = _split(du, n_u, rng)
    moves: list[tuple[float, float]] = []
    u_first = n_u == n_v
    for k in range(n_v):
        if u_first:
            moves.append((us[k], 0.0))
        moves.append((0.0, vs[k]))
        if not u_first and k < n_u:
            moves.append((us[k], 0.0))
    points = [start]
    for mu, mv in moves:
        points.append((points[-1][0] + mu, points[-1][1] + mv))
    return points


# --- the trip ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Sample:
    """The true state at one instant."""

    t: float
    x: float
    y: float
    v: float
    heading: float | None
    phase: str  # drive | walk | indoor | car


@dataclass(slots=True)
class _Stop:
    s: float
    wait: float


class _Trip:
    """Builds one trip: route, motion, truth, then the phone's fixes."""

    def __init__(self, rng: random.Random, trip_id: str, kind: str, start_t: float) -> None:
        self.rng = rng
        self.trip_id = trip_id
        self.kind = kind
        self.start_t = start_t
        self.tags: list[str] = []
        city = rng.choice(CITIES)
        lat0 = city[0] + rng.uniform(-0.06, 0.06)
        lon0 = city[1] + rng.uniform(-0.06, 0.06) / max(math.cos(math.radians(city[0])), 0.2)
        self.dest = (round(lat0, 6), round(lon0, 6))
        self.proj = LocalProjection(*self.dest)
        # The projection's centre is rounded (geo.py shares transformers between nearby
        # fences), so it can sit metres off the destination. Plane coordinates here are
        # relative to the destination itself; this is where it lies in the projection.
        self.origin = self.proj.to_xy(*self.dest)
        radii, weights = zip(*FENCE_RADII_M, strict=True)
        self.radius = rng.choices(radii, weights=weights)[0]
        self.grid = rng.uniform(0.0, math.pi / 2)  # street grid orientation
        self.accel = rng.uniform(1.0, 2.0)
        self.planned: list[tuple[float, float]] = []  # the navigation route, grid (u, v)
        # The road driven to the final stop, and when the car got there (truth for oracles).
        self.approach: _Line | None = None
        self.approach_end_t = -math.inf

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        """A plane point (metres east/north of the destination) as (lat, lon)."""
        return self.proj.to_latlon(x + self.origin[0], y + self.origin[1])

    def to_xy(self, u: float, v: float) -> tuple[float, float]:
        """A street-grid point (metres along/across the grid) as metres east/north."""
        c, s = math.cos(self.grid), math.sin(self.grid)
        return u * c - v * s, u * s + v * c

    def build(self) -> Trace:
        samples, route_m, straight_m, park_m = self._motion()
        arrived, departed = self._truth(samples)
        fixes, truths = self._phone(samples)
        first = fixes[0] if fixes else None
        truth = TripTruth(
            trip_id=self.trip_id,
            kind=self.kind,
            dest_lat=self.dest[0],
            dest_lon=self.dest[1],
            radius_m=self.radius,
            start_t=first.t if first else self.start_t,
            arrived_t=None if arrived is None else round(arrived, 3),
            departed_t=None if departed is None else round(departed, 3),
            route_m=round(route_m, 1),
            straight_m=round(straight_m, 1),
            park_m=None if park_m is None else round(park_m, 1),
            tags=tuple(sorted(set(self.tags))),
        )
        route = tuple(self.to_latlon(*self.to_xy(u, v)) for u, v in self.planned)
        free_flow, route_left, to_fence = self._left_on_approach(truths)
        return Trace(
            truth,
            fixes,
            [self.to_latlon(p.x, p.y) for p in truths],
            route,
            phases=tuple(_phase(p) for p in truths),
            free_flow_left_s=free_flow,
            route_left_m=route_left,
            free_flow_to_fence_s=to_fence,
        )

    def _left_on_approach(self, truths: list[_Sample]) -> tuple[_Optionals, _Optionals, _Optionals]:
        """Free-flow seconds and metres left on the approach road for each fix, and the
        free-flow seconds to where it last enters the fence (no rng)."""
        line = self.approach
        if line is None:
            none = (None,) * len(truths)
            return none, none, none
        suffix = line.free_flow_s()

        def seconds_left(s: float, segment: int) -> float:
            in_segment = (line.cum[segment + 1] - s) / line.cruise[segment]
            return in_segment + (suffix[segment + 1] if segment + 1 < len(suffix) else 0.0)

        entry_s = line.last_entry(self.radius)
        at_entry = seconds_left(entry_s, line.segment(entry_s))
        free_flow: list[float | None] = []
        route_left: list[float | None] = []
        to_fence: list[float | None] = []
        segment = 0
        for p in truths:
            if p.t > self.approach_end_t:
                free_flow.append(None)
                route_left.append(None)
                to_fence.append(None)
                continue
            s = line.s_forward(p.x, p.y, segment)
            segment = line.segment(s)
            left = seconds_left(s, segment)
            free_flow.append(round(left, 1))
            route_left.append(round(line.length - s, 1))
            to_fence.append(round(max(left - at_entry, 0.0), 1) if s < entry_s else 0.0)
        return tuple(free_flow), tuple(route_left), tuple(to_fence)

    # motion -------------------------------------------------------------------------------

    def _motion(self) -> tuple[list[_Sample], float, float, float | None]:
        """True samples for the whole trip, the driven length and the straight-line length."""
        rng = self.rng
        distance = rng.uniform(2000.0, 15000.0)
        bearing = rng.uniform(0.0, 2 * math.pi)
        start = (distance * math.cos(bearing), distance * math.sin(bearing))  # grid (u, v)
        street = rng.uniform(8.0, 30.0) * rng.choice((-1.0, 1.0))  # street's offset from door
        if self.kind == "drive_past":
            street = math.copysign(rng.uniform(5.0, 60.0), street)
            return self._drive_past(start, street)
        park = rng.uniform(0.0, 60.0) if self.kind != "park_walk" else rng.uniform(60.0, 140.0)
        street = math.copysign(min(abs(street), park), street)
        pu = math.sqrt(max(park * park - street * street, 0.0)) * rng.choice((-1.0, 1.0))
        car = (pu, street)
        side = 1.0 if start[0] > pu else -1.0  # approach from the start's side
        approach = rng.uniform(250.0, 600.0)
        entry = (pu + side * approach, street)
        tail: list[tuple[float, float]] = []
        if self.kind == "overshoot":
            tail = self._block_loop(car, side, street)
        circuity = rng.uniform(1.2, 1.5)
        straight = math.hypot(start[0] - car[0], start[1] - car[1])
        l1 = abs(entry[0] - start[0]) + abs(entry[1] - start[1]) + approach
        extra = max(circuity * straight - l1, 0.0)
        stairs = _staircase(rng, start, entry, extra)
        # A routing engine routes to the street in front of the door, (0, street), along the
        # same streets; where the car parks and any loop round the block are not its to know.
        self.planned = [*stairs, (0.0, street)]
        grid = [*stairs, *tail, car]
        line = self._line(grid, side_street_from=len(grid) - 2 - len(tail))
        t = self.start_t
        samples = self._drive(line, t, stop_near_end=False)
        self.approach, self.approach_end_t = line, samples[-1].t
        samples += self._visit(samples[-1].t, car)
        samples += self._drive_away(samples[-1].t, car, side, street)
        return samples, line.length, straight, park

    def _block_loop(
        self, car: tuple[float, float], side: float, street: float
    ) -> list[tuple[float, float]]:
        """Past the house, round the block and back along the same street (missed the door)."""
        rng = self.rng
        over = rng.uniform(60.0, 200.0)
        back = rng.uniform(80.0, 200.0)
        depth = math.copysign(rng.uniform(100.0, 200.0), street)
        pu = car[0]
        return [
            (pu - side * over, street),
            (pu - side * over, street + depth),
            (pu + side * back, street + depth),
            (pu + side * back, street),
        ]

    def _drive_past(
        self, start: tuple[float, float], street: float
    ) -> tuple[list[_Sample], float, float, None]:
        rng = self.rng
        side = 1.0 if start[0] > 0 else -1.0
        approach = rng.uniform(250.0, 600.0)
        entry = (side * approach, street)
        beyond = rng.uniform(400.0, 1500.0)
        turn = rng.uniform(300.0, 1000.0) * rng.choice((-1.0, 1.0))
        tail = [(-side * beyond, street), (-side * beyond, street + turn)]
        straight = math.hypot(*start)
        l1 = abs(entry[0] - start[0]) + abs(entry[1] - start[1]) + approach
        extra = max(rng.uniform(1.2, 1.5) * straight - l1, 0.0)
        stairs = _staircase(rng, start, entry, extra)
        self.planned = [*stairs, (0.0, street)]
        grid = [*stairs, *tail]
        line = self._line(grid, side_street_from=len(grid) - 3)
        door_s = line.s_nearest(*self.to_xy(0.0, street))
        red_at_door = None
        if rng.random() < 0.5:
            # A red light next to the customer's house: stopped inside the fence for a minute.
            red_at_door = _Stop(door_s + rng.uniform(-40.0, 40.0), rng.uniform(20.0, 60.0))
            self.tags.append("red_at_door")
        samples = self._drive(line, self.start_t, stop_near_end=True, extra_stop=red_at_door)
        self.approach, self.approach_end_t = line, samples[-1].t
        return samples, line.length, straight, None

    def _line(self, grid: list[tuple[float, float]], side_street_from: int) -> _Line:
        """Plane polyline with speeds: short legs and the last ones are side streets."""
        rng = self.rng
        points = _simplify([self.to_xy(u, v) for u, v in grid])
        cruise = []
        for i, ((x0, y0), (x1, y1)) in enumerate(pairwise(points)):
            length = math.hypot(x1 - x0, y1 - y0)
            side = length < 700.0 or i == 0 or i >= side_street_from
            cruise.append(rng.uniform(5.0, 8.0) if side else rng.uniform(8.0, 14.0))
        turns = [rng.uniform(3.5, 6.0) for _ in points[1:-1]]
        return _Line(points, cruise, turns)

    def _lights(self, line: _Line, keep_clear_at_end: float) -> list[_Stop]:
        """A light every 300-800 m; half are red when reached, for 0-60 s."""
        rng = self.rng
        stops = []
        s = rng.uniform(300.0, 800.0)
        while s < line.length - keep_clear_at_end:
            if rng.random() < 0.5:
                stops.append(_Stop(s, rng.uniform(0.0, 60.0)))
            s += rng.uniform(300.0, 800.0)
        return stops

    def _jams(self, line: _Line) -> list[tuple[float, float, float]]:
        """Congested stretches (start, end, mean crawl speed 2-4 m/s), on 45 % of trips."""
        rng = self.rng
        if rng.random() >= 0.45 or line.length < 1500:
            return []
        self.tags.append("jam")
        jams = []
        for _ in range(rng.randint(1, 2)):
            a = rng.uniform(0.0, 0.85 * line.length)
            b = min(a + rng.uniform(500.0, 2500.0), line.length - 200.0)
            jams.append((a, b, rng.uniform(2.0, 4.0)))
        return jams

    def _drive(
        self,
        line: _Line,
        t: float,
        stop_near_end: bool,
        extra_stop: _Stop | None = None,
        jams: bool = True,
    ) -> list[_Sample]:
        """One-second kinematics along ``line`` from standstill to standstill at its end."""
        rng = self.rng
        stops = self._lights(line, keep_clear_at_end=0.0 if stop_near_end else 60.0)
        if extra_stop is not None:
            stops = sorted([*[p for p in stops if abs(p.s - extra_stop.s) > 50], extra_stop],
                           key=lambda p: p.s)  # fmt: skip
        crawl = self._jams(line) if jams else []
        corners = line.corners()
        x, y, h = line.at(0.0)
        out = [_Sample(t, x, y, 0.0, h, "drive")]
        s = v = 0.0
        wobble = 1.0
        jam_target, jam_until = 3.0, t
        next_stop = 0
        for _ in range(6 * 3600):  # a bound, far above any trip here
            if s >= line.length - 0.3 and v < 0.5:
                break
            wobble = 0.9 * wobble + 0.1 * rng.gauss(1.0, 0.15)
            target = line.cruise[line.segment(s)] * wobble
            jam = next((j for j in crawl if j[0] <= s < j[1]), None)
            if jam is not None:
                if t >= jam_until:  # stop-and-go: a new crawl speed every 10-40 s
                    jam_target = 0.0 if rng.random() < 0.25 else rng.uniform(1.0, 2 * jam[2])
                    jam_until = t + rng.uniform(10.0, 40.0)
                target = min(target, jam_target)
            hard = line.length
            if next_stop < len(stops) and stops[next_stop].s >= s - 0.5:
                hard = min(hard, stops[next_stop].s)
            allow = math.sqrt(2 * BRAKE * max(hard - s, 0.0))
            for cs, cv in corners:
                if s < cs < s + 300.0:
                    allow = min(allow, math.sqrt(cv * cv + 2 * BRAKE * (cs - s)))
            wanted = max(min(v + self.accel, target), v - MAX_DECEL)
            v_new = max(min(wanted, allow), 0.0)
            s = min(s + 0.5 * (v + v_new), hard)
            v = v_new
            t += 1.0
            x, y, h = line.at(s)
            out.append(_Sample(t, x, y, v, h, "drive"))
            at_light = next_stop < len(stops) and s >= stops[next_stop].s - 0.5
            if at_light and v < 0.5:
                v = 0.0
                for _ in range(round(stops[next_stop].wait)):
                    t += 1.0
                    out.append(_Sample(t, x, y, 0.0, h, "drive"))
                next_stop += 1
            elif next_stop < len(stops) and s > stops[next_stop].s + 0.5:
                next_stop += 1
        out[-1].v = 0.0
        return out

    def _walk(
        self, t: float, a: tuple[float, float], b: tuple[float, float], speed: float
    ) -> list[_Sample]:
        """On foot from a to b (plane metres), one sample a second, excluding the start."""
        length = math.hypot(b[0] - a[0], b[1] - a[1])
        heading = math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360.0
        out = []
        steps = max(math.ceil(length / speed), 1)
        for k in range(1, steps + 1):
            f = min(k * speed / length, 1.0) if length > 0 else 1.0
            v = speed if k < steps else 0.0
            out.append(
                _Sample(
                    t + k, a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), v, heading, "walk"
                )
            )
        return out

    def _visit(self, t: float, car_uv: tuple[float, float]) -> list[_Sample]:
        """Walk in, stay 30-90 min indoors (wandering a few metres), walk back to the car."""
        rng = self.rng
        car = self.to_xy(*car_uv)
        door_r, door_b = rng.uniform(0.0, 15.0), rng.uniform(0.0, 2 * math.pi)
        door = (door_r * math.cos(door_b), door_r * math.sin(door_b))
        pace = rng.uniform(1.1, 1.5)
        out = [_Sample(t + k, *car, 0.0, None, "car") for k in range(1, rng.randint(10, 90))]
        out += self._walk(out[-1].t, car, door, pace)
        stay = rng.uniform(30.0, 90.0) * 60.0
        step = 1.0 if rng.random() < 0.3 else 5.0
        if step == 1.0:
            self.tags.append("indoor_1hz")
        x, y = door
        t_in = out[-1].t
        for k in range(1, int(stay / step) + 1):
            x = door[0] + 0.98 * (x - door[0]) + rng.gauss(0.0, 0.4 * math.sqrt(step))
            y = door[1] + 0.98 * (y - door[1]) + rng.gauss(0.0, 0.4 * math.sqrt(step))
            out.append(_Sample(t_in + k * step, x, y, 0.0, None, "indoor"))
        out += self._walk(out[-1].t, (x, y), car, pace)
        last = out[-1].t
        out += [_Sample(last + k, *car, 0.0, None, "car") for k in range(1, rng.randint(20, 180))]
        return out

    def _drive_away(
        self, t: float, car: tuple[float, float], side: float, street: float
    ) -> list[_Sample]:
        """On along the street, then a few legs towards the next job (2-4 km, ~5-10 min)."""
        rng = self.rng
        pu = car[0]
        first = (pu - side * rng.uniform(150.0, 500.0), street)
        second = (first[0], street + rng.choice((-1.0, 1.0)) * rng.uniform(500.0, 1500.0))
        third = (second[0] - side * rng.uniform(500.0, 1500.0), second[1])
        line = self._line([car, first, second, third], side_street_from=1)
        return self._drive(line, t, stop_near_end=True, jams=False)[1:]

    # truth ----------------------------------------------------------------------------------

    def _truth(self, samples: list[_Sample]) -> tuple[float | None, float | None]:
        """Fence crossings of the visit: the inside run that contains the indoor stay."""
        indoor = next((i for i, p in enumerate(samples) if p.phase == "indoor"), None)
        if indoor is None:
            return None, None
        r = self.radius
        dist = [math.hypot(p.x, p.y) for p in samples]
        first = indoor
        while first > 0 and dist[first - 1] <= r:
            first -= 1
        last = indoor
        while last < len(samples) - 1 and dist[last + 1] <= r:
            last += 1
        arrived = departed = None
        if first > 0:
            arrived = _crossing(
                samples[first - 1].t, dist[first - 1], samples[first].t, dist[first], r
            )
        if last < len(samples) - 1:
            departed = _crossing(
                samples[last].t, dist[last], samples[last + 1].t, dist[last + 1], r
            )
        return arrived, departed

    # the phone ------------------------------------------------------------------------------

    def _phone(self, samples: list[_Sample]) -> tuple[list[Fix], list[_Sample]]:
        """What the phone reports: noise, outliers, tunnels, doze gaps; fields it may omit."""
        rng = self.rng
        has_speed = rng.random() < 0.85
        has_acc = rng.random() < 0.95
        if not has_speed:
            self.tags.append("no_speed")
        if not has_acc:
            self.tags.append("no_acc")
        dark = self._tunnels(samples) + self._doze(samples)
        base_acc = rng.uniform(5.0, 15.0)
        indoor_acc = rng.uniform(20.0, 50.0)
        ex = ey = 0.0
        last_t: float | None = None
        reacquire = 0
        fixes: list[Fix] = []
        truths: list[_Sample] = []
        for p in samples:
            if any(a <= p.t < b for a, b in dark):
                reacquire = rng.randint(2, 5)
                continue
            if p.phase != "indoor" and rng.random() < 0.01:
                continue  # the odd fix lost on the way (OS throttling, radio busy)
            indoors = p.phase == "indoor"
            acc = (indoor_acc if indoors else base_acc) * math.exp(rng.gauss(0.0, 0.15))
            acc = min(max(acc, 15.0), 80.0) if indoors else min(max(acc, 3.0), 25.0)
            if reacquire:
                acc *= 3.0
                reacquire -= 1
            tau = 90.0 if indoors else 8.0
            prev_t = last_t if last_t is not None else p.t - 1.0
            rho = math.exp(-(p.t - prev_t) / tau) if last_t is not None else 0.0
            last_t = p.t
            k = math.sqrt(1.0 - rho * rho)
            ex = rho * ex + k * rng.gauss(0.0, 1.0)
            ey = rho * ey + k * rng.gauss(0.0, 1.0)
            x = p.x + ex * acc * SIGMA_PER_ACC
            y = p.y + ey * acc * SIGMA_PER_ACC
            per_h = OUTLIERS_PER_H_INDOOR if indoors else OUTLIERS_PER_H
            if rng.random() < per_h * min(p.t - prev_t, 5.0) / 3600.0:
                # A single wild fix (cell/Wi-Fi fallback); half of them still claim a good acc.
                jump, direction = rng.uniform(200.0, 800.0), rng.uniform(0.0, 2 * math.pi)
                x += jump * math.cos(direction)
                y += jump * math.sin(direction)
                if rng.random() < 0.5:
                    acc = rng.uniform(150.0, 1000.0)
                self.tags.append("outlier")
            fixes.append(self._fix(p, x, y, acc if has_acc else None, has_speed))
            truths.append(p)
        return fixes, truths

    def _fix(self, p: _Sample, x: float, y: float, acc: float | None, has_speed: bool) -> Fix:
        rng = self.rng
        lat, lon = self.to_latlon(x, y)
        speed = heading = None
        if has_speed:
            speed = round(max(p.v + rng.gauss(0.0, 0.3), 0.0), 2)
            if p.v > 1.5 and p.heading is not None:
                heading = round((p.heading + rng.gauss(0.0, 5.0)) % 360.0, 1)
        return Fix(
            t=round(p.t, 3),
            lat=round(lat, 7),
            lon=round(lon, 7),
            acc=None if acc is None else round(acc, 1),
            speed=speed,
            heading=heading,
        )

    def _tunnels(self, samples: list[_Sample]) -> list[tuple[float, float]]:
        """On 30 % of trips, 1-2 dropouts of 30-120 s while driving (not in the last 2 min)."""
        rng = self.rng
        if rng.random() >= 0.3:
            return []
        drive_end = next((p.t for p in samples if p.phase != "drive"), samples[-1].t)
        moving = [
            p.t for p in samples if p.phase == "drive" and p.v > 3.0 and p.t < drive_end - 240
        ]
        if not moving:
            return []
        self.tags.append("tunnel")
        return [
            (start, start + rng.uniform(30.0, 120.0))
            for start in sorted(rng.sample(moving, min(rng.randint(1, 2), len(moving))))
        ]

    def _doze(self, samples: list[_Sample]) -> list[tuple[float, float]]:
        """On 30 % of visits the phone dozes indoors: no fixes for 2-10 minutes."""
        rng = self.rng
        indoor = [p.t for p in samples if p.phase == "indoor"]
        if not indoor or rng.random() >= 0.3:
            return []
        self.tags.append("doze")
        start = rng.uniform(indoor[0] + 120.0, max(indoor[-1] - 900.0, indoor[0] + 121.0))
        return [(start, start + rng.uniform(120.0, 600.0))]


_Optionals = tuple[float | None, ...]


def _phase(p: _Sample) -> str:
    """The phase of a true sample, driving split into moving and (nearly) stopped."""
    if p.phase == "drive" and p.v <= 0.5:
        return "light"
    return p.phase


def _crossing(t0: float, d0: float, t1: float, d1: float, r: float) -> float:
    """When the distance from the centre passed ``r`` between two samples (linear)."""
    if d0 == d1:
        return t1
    return t0 + (d0 - r) / (d0 - d1) * (t1 - t0)
