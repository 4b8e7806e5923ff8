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
The street geometry is ``trace_route``, the kinematics ``trace_motion``, the phone
``trace_phone``; this module puts a trip together and works out its truth.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from geofence.geo import LocalProjection
from geofence.model import Fix
from loadtest.trace_motion import Motion, Sample
from loadtest.trace_phone import Phone
from loadtest.trace_route import Line

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
    # When the vehicle pulled away after the visit: on a park-and-walk the departure
    # (crossing the fence on foot) comes a walk and a sit in the van earlier.
    drove_off_t: float | None = None

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
            **({} if self.drove_off_t is None else {"drove_off_t": self.drove_off_t}),
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
    # driver's mistakes (an overshoot's loop round the block). See ``loadtest/roads.py``.
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


# --- the trip ---------------------------------------------------------------------------


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
        # The road driven to the final stop, and when the car got there (set by ``build``).
        self.approach: Line | None = None
        self.approach_end_t = -math.inf

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        """A plane point (metres east/north of the destination) as (lat, lon)."""
        return self.proj.to_latlon(x + self.origin[0], y + self.origin[1])

    def build(self) -> Trace:
        motion = Motion(self.rng, self.kind, self.start_t, self.grid, self.accel, self.tags)
        samples, route_m, straight_m, park_m = motion.run()
        self.approach, self.approach_end_t = motion.approach, motion.approach_end_t
        arrived, departed = self._truth(samples)
        fixes, truths = Phone(self.rng, self.tags, self.to_latlon).report(samples)
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
            drove_off_t=drive_off_time(samples),
        )
        route = tuple(self.to_latlon(*motion.to_xy(u, v)) for u, v in motion.planned)
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

    def _left_on_approach(self, truths: list[Sample]) -> tuple[_Optionals, _Optionals, _Optionals]:
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

    # truth ----------------------------------------------------------------------------------

    def _truth(self, samples: list[Sample]) -> tuple[float | None, float | None]:
        return visit_crossings(samples, self.radius)


_Optionals = tuple[float | None, ...]


def visit_crossings(samples: list[Sample], r: float) -> tuple[float | None, float | None]:
    """Fence crossings of the visit: the inside run that contains the indoor stay.

    ``samples`` are in metres from the fence centre; None where there was no visit, or the
    trace starts (or ends) inside the fence.
    """
    indoor = next((i for i, p in enumerate(samples) if p.phase == "indoor"), None)
    if indoor is None:
        return None, None
    dist = [math.hypot(p.x, p.y) for p in samples]
    first = indoor
    while first > 0 and dist[first - 1] <= r:
        first -= 1
    last = indoor
    while last < len(samples) - 1 and dist[last + 1] <= r:
        last += 1
    arrived = departed = None
    if first > 0:
        arrived = _crossing(samples[first - 1].t, dist[first - 1], samples[first].t, dist[first], r)
    if last < len(samples) - 1:
        departed = _crossing(samples[last].t, dist[last], samples[last + 1].t, dist[last + 1], r)
    return arrived, departed


def drive_off_time(samples: list[Sample]) -> float | None:
    """When the vehicle first moved after the visit (None without a visit)."""
    indoor = [i for i, p in enumerate(samples) if p.phase == "indoor"]
    if not indoor:
        return None
    after = (p for p in samples[indoor[-1] :] if p.phase == "drive" and p.v > 0.5)
    moving = next(after, None)
    return None if moving is None else round(moving.t, 3)


def _phase(p: Sample) -> str:
    """The phase of a true sample, driving split into moving and (nearly) stopped."""
    if p.phase == "drive" and p.v <= 0.5:
        return "light"
    return p.phase


def _crossing(t0: float, d0: float, t1: float, d1: float, r: float) -> float:
    """When the distance from the centre passed ``r`` between two samples (linear)."""
    if d0 == d1:
        return t1
    return t0 + (d0 - r) / (d0 - d1) * (t1 - t0)
