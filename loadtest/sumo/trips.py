"""SUMO's recorded drives made into technician trips: the visit on foot, the phone, the truth.

While SUMO holds the van parked, the technician sits in it, walks to the door, stays
indoors (wandering a few metres, the phone throttled to a fix per 5 s on most phones), walks
back and sits again; the van's stop lasts exactly that long (``plan.StopPlan``). The phone
(``trace_phone.Phone``: noise, outliers, tunnels, dozing, missing fields) is the same as for
Doorstep's own trips, so only the driving differs between the two sources. The truth is
worked out from the true positions as in ``traces.py``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from loadtest.sumo.home import tools
from loadtest.sumo.networks import Network
from loadtest.sumo.plan import StopPlan, TechPlan, plan_trips
from loadtest.sumo.run import Track, simulate
from loadtest.trace_motion import Sample
from loadtest.trace_phone import Phone
from loadtest.traces import EPOCH, Trace, TripTruth, drive_off_time, visit_crossings

TECHNICIANS_PER_RUN = 40
DEPART_S = (300.0, 1800.0)  # after the background traffic has filled the network
RUN_END_S = 3 * 3600.0
# Crept no faster than this for this long inside the fence: queued (a tag, for breakdowns).
QUEUE_SPEED_MPS = 1.5
QUEUE_TAG_S = 120.0


def generate(
    network: Network,
    count: int,
    seed: int,
    workdir: Path,
    progress: Callable[[int], None] | None = None,
    **plan_options: Any,
) -> tuple[list[Trace], list[str]]:
    """``count`` trips on ``network``; also the ids of trips dropped (SUMO teleported them).

    ``plan_options`` go to ``plan.plan_trips`` (``kinds``, ``visit_s``).
    """
    tools()
    import sumolib  # type: ignore[import-not-found]

    net = sumolib.net.readNet(str(network.file()))
    traces: list[Trace] = []
    dropped: list[str] = []
    for batch, size in enumerate(_batches(count)):
        run_seed = seed * 1000 + batch
        plans = plan_trips(
            net, size, run_seed, prefix=f"sumo-{network.name}", depart_s=DEPART_S, **plan_options
        )
        tracks = simulate(
            network.file(),
            plans,
            seed=run_seed,
            traffic_per_s=network.traffic_per_s,
            end_s=RUN_END_S,
            workdir=workdir / f"run-{run_seed}",
        )
        for track in tracks:
            trace = to_trace(net, track, epoch=EPOCH + batch * RUN_END_S)
            if trace is None:
                dropped.append(track.plan.vehicle_id)
            else:
                traces.append(trace)
        if progress is not None:
            progress(size)
    return traces, dropped


def _batches(count: int) -> Iterator[int]:
    while count > 0:
        yield min(count, TECHNICIANS_PER_RUN)
        count -= TECHNICIANS_PER_RUN


def to_trace(net: Any, track: Track, epoch: float) -> Trace | None:
    """One technician's trip, or None when SUMO's run of it is unusable (teleported, or the
    visit never happened because the van never reached its stop)."""
    plan = track.plan
    if track.teleported or len(track.points) < 2:
        return None
    if plan.stop is not None and (track.stop_start is None or track.stop_end is None):
        return None
    rng = random.Random(f"doorstep-sumo-phone:{plan.vehicle_id}")
    tags: list[str] = [f"network:{plan.vehicle_id.split('-')[1]}"]
    samples = _samples(plan, track, rng, epoch)
    if _queued(samples, plan.radius_m):
        tags.append("queued")
    if plan.block is not None:
        tags.append("blocked_street")
    arrived, departed = visit_crossings(samples, plan.radius_m)
    if plan.stop is not None and (arrived is None or departed is None):
        return None  # starts or ends inside the fence: no truth to score against

    def to_latlon(x: float, y: float) -> tuple[float, float]:
        lon, lat = net.convertXY2LonLat(x + plan.dest_x, y + plan.dest_y)
        return lat, lon

    fixes, truths = Phone(rng, tags, to_latlon).report(samples)
    dest_lat, dest_lon = to_latlon(0.0, 0.0)
    stop = plan.stop
    truth = TripTruth(
        trip_id=plan.vehicle_id,
        kind=plan.kind,
        dest_lat=round(dest_lat, 7),
        dest_lon=round(dest_lon, 7),
        radius_m=plan.radius_m,
        start_t=fixes[0].t if fixes else samples[0].t,
        arrived_t=None if arrived is None else round(arrived, 3),
        departed_t=None if departed is None else round(departed, 3),
        route_m=round(_route_m(net, plan), 1),
        straight_m=round(plan.straight_m, 1),
        park_m=None
        if stop is None
        else round(math.hypot(stop.x - plan.dest_x, stop.y - plan.dest_y), 1),
        tags=tuple(sorted(set(tags))),
        drove_off_t=drive_off_time(samples),
    )
    return Trace(truth, fixes, [to_latlon(p.x, p.y) for p in truths], _road(net, plan, to_latlon))


def _samples(plan: TechPlan, track: Track, rng: random.Random, epoch: float) -> list[Sample]:
    """True samples in metres from the house: SUMO's driving, with the visit in the stop."""
    ox, oy = plan.dest_x, plan.dest_y
    out: list[Sample] = []
    stop = plan.stop
    start, end = (track.stop_start, track.stop_end) if stop is not None else (None, None)
    visit_done = False
    for t, x, y, v, heading in track.points:
        if start is not None and end is not None and start <= t < end:
            if not visit_done and stop is not None:
                out += _visit(stop, plan, epoch + start, epoch + end, rng, (x - ox, y - oy))
                visit_done = True
            continue
        out.append(Sample(epoch + t, x - ox, y - oy, v, heading if v > 0.5 else None, "drive"))
    return out


def _visit(
    stop: StopPlan,
    plan: TechPlan,
    start: float,
    end: float,
    rng: random.Random,
    car: tuple[float, float],
) -> list[Sample]:
    """Sit, walk to the door, stay, walk back, sit: filling [start, end) second by second."""
    door = (plan.door_x - plan.dest_x, plan.door_y - plan.dest_y)
    out = [Sample(start + k, *car, 0.0, None, "car") for k in range(int(stop.sit_in_s))]
    t = start + stop.sit_in_s
    walk_in = _walk(t, car, door, stop.pace_mps)
    out += walk_in
    t = walk_in[-1].t if walk_in else t
    x, y = door
    indoor_end = end - stop.sit_out_s - math.ceil(stop.walk_m / stop.pace_mps)
    step = stop.indoor_step_s
    while t + step < indoor_end:
        t += step
        x = door[0] + 0.98 * (x - door[0]) + rng.gauss(0.0, 0.4 * math.sqrt(step))
        y = door[1] + 0.98 * (y - door[1]) + rng.gauss(0.0, 0.4 * math.sqrt(step))
        out.append(Sample(t, x, y, 0.0, None, "indoor"))
    walk_out = _walk(t, (x, y), car, stop.pace_mps)
    out += walk_out
    t = walk_out[-1].t if walk_out else t
    while t + 1.0 < end:
        t += 1.0
        out.append(Sample(t, *car, 0.0, None, "car"))
    return out


def _walk(t: float, a: tuple[float, float], b: tuple[float, float], pace: float) -> list[Sample]:
    """On foot from a to b, one sample a second (not including a)."""
    length = math.hypot(b[0] - a[0], b[1] - a[1])
    if length == 0:
        return []
    heading = math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360.0
    steps = max(math.ceil(length / pace), 1)
    out = []
    for k in range(1, steps + 1):
        f = min(k * pace / length, 1.0)
        out.append(
            Sample(
                t + k,
                a[0] + f * (b[0] - a[0]),
                a[1] + f * (b[1] - a[1]),
                pace if k < steps else 0.0,
                heading,
                "walk",
            )
        )
    return out


def _queued(samples: Sequence[Sample], radius: float) -> bool:
    """Crept or stood in the van inside the fence for QUEUE_TAG_S without parking."""
    since: float | None = None
    for p in samples:
        if p.phase != "drive":
            since = None
            continue
        slow = p.v <= QUEUE_SPEED_MPS and math.hypot(p.x, p.y) <= radius
        if not slow:
            since = None
        elif since is None:
            since = p.t
        elif p.t - since >= QUEUE_TAG_S:
            return True
    return False


def _road(
    net: Any, plan: TechPlan, to_latlon: Callable[[float, float], tuple[float, float]]
) -> tuple[tuple[float, float], ...]:
    """The planned road to the door (what a routing engine would give), as (lat, lon)."""
    points: list[tuple[float, float]] = []
    for edge_id in plan.edges[: _approach_end(plan) + 1]:
        for x, y in net.getEdge(edge_id).getShape():
            points.append(to_latlon(x - plan.dest_x, y - plan.dest_y))
    return tuple(points)


def _route_m(net: Any, plan: TechPlan) -> float:
    end = _approach_end(plan)
    return sum(net.getEdge(edge_id).getLength() for edge_id in plan.edges[: end + 1])


def _approach_end(plan: TechPlan) -> int:
    """Index of the route's last edge on the way in: where the van parks, or the door's."""
    return plan.edges.index(plan.stop.edge if plan.stop is not None else plan.door_edge)
