"""The technicians' trips on a SUMO network: doors, routes, where to stop and for how long.

What a dispatcher and a technician decide, drawn from a seed: which house (a point beside a
residential street), where the trip starts (0.6-3 km away), whether the van parks at the
door or round the corner, how long the visit lasts. How the van gets there through the
traffic is SUMO's business (``run``). Pure given the loaded network: no files, no clock.

Kinds (as in ``loadtest/traces.py``, plus the queue):

- ``normal``: park by the door (0-40 m along the street);
- ``park_walk``: park 50-150 m from the door, on the same or another street, and walk;
- ``overshoot``: drive past the door, on round a block, come back and park on the other
  side of the street;
- ``drive_past``: pass the door and drive on;
- ``queue_past``: pass the door, but a van double-parks 15-60 m past it for 3-5 minutes
  just as the technician comes, so the technician queues by the door, then drives on.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

KINDS = ("normal", "park_walk", "overshoot", "drive_past", "queue_past")
DEFAULT_MIX: dict[str, float] = {
    "normal": 0.35,
    "park_walk": 0.25,
    "overshoot": 0.1,
    "drive_past": 0.15,
    "queue_past": 0.15,
}
# Streets where customers live; not motorways, tracks or service roads.
HOUSE_STREETS = (
    "highway.residential",
    "highway.living_street",
    "highway.unclassified",
    "highway.tertiary",
    "highway.secondary",
)
FENCE_RADII_M = ((75.0, 0.7), (100.0, 0.15), (50.0, 0.15))
# Straight line from the start to the door, drawn uniformly (then the nearest edges to that
# distance), so that long approaches are as common as the network allows: drawing among
# the edges in the ring would make most trips short, as most of a city is near any door.
START_M = (800.0, 3500.0)
START_SLACK_M = 200.0
AWAY_M = (700.0, 2500.0)  # and from the door to the next job
VISIT_S = (600.0, 2400.0)  # 10-40 minutes indoors
BLOCK_S = (180.0, 300.0)  # how long the double-parked van holds the street
TAIL_S = (75.0, 130.0)  # the trace ends this long after the technician drives off


@dataclass(frozen=True)
class StopPlan:
    """Where the van parks (off the lane) and the visit's timings around it."""

    edge: str
    lane: int
    pos: float  # metres along the lane
    x: float
    y: float
    sit_in_s: float  # in the parked van before walking to the door
    pace_mps: float
    stay_s: float  # indoors
    indoor_step_s: float  # 5 s: the phone throttles its fixes indoors; 1 s on some phones
    sit_out_s: float  # back in the van before driving off
    walk_m: float  # van to door

    @property
    def duration_s(self) -> float:
        walk = 2 * math.ceil(self.walk_m / self.pace_mps)
        return self.sit_in_s + walk + self.stay_s + self.sit_out_s


@dataclass(frozen=True)
class BlockPlan:
    """A van double-parked on the technician's lane past the door (``queue_past``)."""

    edge: str
    lane: int
    pos: float
    hold_s: float
    follow_edge: str  # the edge it leaves by


@dataclass(frozen=True)
class TechPlan:
    vehicle_id: str
    kind: str
    depart_s: float  # simulation time
    edges: tuple[str, ...]
    door_edge: str
    dest_x: float  # the customer's house (network metres)
    dest_y: float
    door_x: float  # where the technician stands indoors, near the house point
    door_y: float
    radius_m: float
    stop: StopPlan | None
    block: BlockPlan | None
    tail_s: float
    straight_m: float


def house_edges(net: Any) -> list[Any]:
    """Edges a customer can live on: drivable, on a house street, long enough for a door."""
    return [
        edge
        for edge in net.getEdges()
        if edge.getFunction() == ""
        and edge.allows("passenger")
        and edge.getType() in HOUSE_STREETS
        and edge.getLength() >= 40.0
    ]


def plan_trips(
    net: Any,
    count: int,
    seed: int,
    *,
    prefix: str,
    depart_s: tuple[float, float],
    mix: dict[str, float] | None = None,
    kinds: Sequence[str] = (),
    visit_s: tuple[float, float] = VISIT_S,
) -> list[TechPlan]:
    """``count`` technician trips departing within ``depart_s``; ``seed`` decides all.

    ``kinds`` forces the kinds in turn instead of drawing them from ``mix``; ``visit_s``
    shortens the visits (a small committed test set).
    """
    houses = house_edges(net)
    drivable = [e for e in net.getEdges() if e.getFunction() == "" and e.allows("passenger")]
    plans: list[TechPlan] = []
    used_doors: set[str] = set()
    weights = mix or DEFAULT_MIX
    for k in range(count):
        rng = random.Random(f"doorstep-sumo:{prefix}:{seed}:{k}")
        kind = rng.choices(list(weights), weights=list(weights.values()))[0]
        if kinds:
            kind = kinds[k % len(kinds)]
        for _attempt in range(200):
            plan = _try_plan(
                net,
                rng,
                kind,
                houses,
                drivable,
                used_doors,
                f"{prefix}-{seed}-{k:04d}",
                rng.uniform(*depart_s),
            )
            if plan is not None:
                if plan.stop is not None and visit_s != VISIT_S:
                    stay = round(rng.uniform(*visit_s))
                    plan = replace(plan, stop=replace(plan.stop, stay_s=stay))
                plans.append(plan)
                used_doors.add(plan.door_edge)
                break
        else:
            raise ValueError(f"no {kind} trip found on this network after 200 tries")
    return plans


def _try_plan(
    net: Any,
    rng: random.Random,
    kind: str,
    houses: list[Any],
    drivable: list[Any],
    used: set[str],
    vehicle_id: str,
    depart: float,
) -> TechPlan | None:
    door_edge = rng.choice(houses)
    if door_edge.getID() in used:
        return None  # one customer per street: two queues on one lane would mix
    lanes = drive_lanes(door_edge)
    if not lanes or (kind == "queue_past" and (len(lanes) != 1 or door_edge.getLength() < 90)):
        return None  # a double-parked van blocks a one-lane street; on two lanes cars pass
    lane = lanes[0]
    length = lane.getLength()
    margin = 70.0 if kind == "queue_past" else 10.0
    if length < margin + 15.0:
        return None
    door_pos = rng.uniform(10.0, length - margin)
    road_x, road_y, nx, ny = _at(lane.getShape(), door_pos)
    setback = rng.uniform(8.0, 20.0)  # the house stands back from the kerb (right side)
    dest_x, dest_y = road_x + nx * setback, road_y + ny * setback
    door_r, door_b = rng.uniform(0.0, 10.0), rng.uniform(0.0, 2 * math.pi)
    door_x, door_y = dest_x + door_r * math.cos(door_b), dest_y + door_r * math.sin(door_b)
    radii, weights = zip(*FENCE_RADII_M, strict=True)
    radius = rng.choices(radii, weights=weights)[0]

    want = rng.uniform(*START_M)
    origin = _edge_at_distance(
        rng, drivable, dest_x, dest_y, (want - START_SLACK_M, want + START_SLACK_M)
    ) or _edge_at_distance(rng, drivable, dest_x, dest_y, (START_M[0], want))
    away = _edge_at_distance(rng, drivable, dest_x, dest_y, AWAY_M)
    if origin is None or away is None:
        return None
    stop: StopPlan | None = None
    block: BlockPlan | None = None
    if kind in ("normal", "drive_past", "queue_past"):
        legs = [(origin, door_edge), (door_edge, away)]
        if kind == "normal":
            pos = min(max(door_pos + rng.uniform(-40.0, 40.0), 8.0), length - 2.0)
            stop = _stop(rng, lane, pos, door_x, door_y)
    elif kind == "park_walk":
        spot = _park_spot(net, rng, door_x, door_y)
        if spot is None:
            return None
        park_lane, pos = spot
        legs = [(origin, park_lane.getEdge()), (park_lane.getEdge(), away)]
        stop = _stop(rng, park_lane, pos, door_x, door_y)
    else:  # overshoot: on past the door, round the block, park on the other side
        back = [
            o
            for o in door_edge.getToNode().getOutgoing()
            if o.getToNode() == door_edge.getFromNode() and o.allows("passenger")
        ]
        onward = [
            o
            for o in door_edge.getToNode().getOutgoing()
            if o.allows("passenger") and o not in back
        ]
        if not back or not onward:
            return None
        reverse, loop = back[0], rng.choice(onward)
        legs = [(origin, door_edge), (door_edge, loop), (loop, reverse), (reverse, away)]
        rev_lane = drive_lanes(reverse)[0]
        pos = min(
            max(rev_lane.getLength() - door_pos + rng.uniform(-20, 20), 8.0),
            rev_lane.getLength() - 2.0,
        )
        stop = _stop(rng, rev_lane, pos, door_x, door_y)
    edges = _route(net, legs)
    if edges is None:
        return None
    if stop is not None and math.hypot(stop.x - door_x, stop.y - door_y) > 160.0:
        return None
    if kind == "queue_past":
        after = edges.index(door_edge.getID())
        if after + 1 >= len(edges):
            return None
        block = BlockPlan(
            door_edge.getID(),
            lane.getIndex(),
            min(door_pos + rng.uniform(15.0, 60.0), length - 3),
            rng.uniform(*BLOCK_S),
            edges[after + 1],
        )
    return TechPlan(
        vehicle_id=vehicle_id,
        kind=kind,
        depart_s=round(depart, 1),
        edges=edges,
        door_edge=door_edge.getID(),
        dest_x=dest_x,
        dest_y=dest_y,
        door_x=door_x,
        door_y=door_y,
        radius_m=radius,
        stop=stop,
        block=block,
        tail_s=rng.uniform(*TAIL_S),
        straight_m=_dist(origin, dest_x, dest_y),
    )


def drive_lanes(edge: Any) -> list[Any]:
    """The edge's lanes a van may use, kerb side first (lane 0 is often a footway)."""
    return [lane for lane in edge.getLanes() if lane.allows("passenger")]


def _stop(rng: random.Random, lane: Any, pos: float, door_x: float, door_y: float) -> StopPlan:
    x, y, _, _ = _at(lane.getShape(), pos)
    return StopPlan(
        edge=lane.getEdge().getID(),
        lane=lane.getIndex(),
        pos=round(pos, 1),
        x=x,
        y=y,
        sit_in_s=float(rng.randint(10, 60)),
        pace_mps=rng.uniform(1.1, 1.5),
        stay_s=round(rng.uniform(*VISIT_S)),
        indoor_step_s=1.0 if rng.random() < 0.3 else 5.0,
        sit_out_s=float(rng.randint(5, 60)),
        walk_m=math.hypot(x - door_x, y - door_y),
    )


def _park_spot(
    net: Any, rng: random.Random, door_x: float, door_y: float
) -> tuple[Any, float] | None:
    """A kerb 50-150 m from the door, on a drivable lane."""
    candidates = []
    for lane, _ in net.getNeighboringLanes(door_x, door_y, 160.0):
        edge = lane.getEdge()
        if edge.getFunction() != "" or lane not in drive_lanes(edge)[:1]:
            continue
        length = lane.getLength()
        for pos in (length * f for f in (0.2, 0.4, 0.6, 0.8)):
            if pos < 8.0 or pos > length - 2.0:
                continue
            x, y, _, _ = _at(lane.getShape(), pos)
            if 50.0 <= math.hypot(x - door_x, y - door_y) <= 150.0:
                candidates.append((lane, pos))
    if not candidates:
        return None
    lane, pos = rng.choice(sorted(candidates, key=lambda c: (c[0].getID(), c[1])))
    return lane, pos


def _route(net: Any, legs: list[tuple[Any, Any]]) -> tuple[str, ...] | None:
    """The shortest drivable path through each leg, joined."""
    edges: list[str] = []
    for a, b in legs:
        path, _cost = net.getShortestPath(a, b, vClass="passenger")
        if not path:
            return None
        ids = [e.getID() for e in path]
        edges += ids if not edges else ids[1:]
    return tuple(edges)


def _edge_at_distance(
    rng: random.Random, edges: list[Any], x: float, y: float, span: tuple[float, float]
) -> Any | None:
    ring = [e for e in edges if span[0] <= _dist(e, x, y) <= span[1]]
    return rng.choice(ring) if ring else None


def _dist(edge: Any, x: float, y: float) -> float:
    ex, ey = _centre(edge)
    return math.hypot(ex - x, ey - y)


def _centre(edge: Any) -> tuple[float, float]:
    shape = edge.getShape()
    return shape[len(shape) // 2]


def _at(shape: list[tuple[float, float]], pos: float) -> tuple[float, float, float, float]:
    """The point ``pos`` metres along a polyline and the unit normal to its right."""
    done = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(shape):
        seg = math.hypot(x1 - x0, y1 - y0)
        if seg > 0 and (done + seg >= pos or (x1, y1) == shape[-1]):
            f = min(max((pos - done) / seg, 0.0), 1.0)
            ux, uy = (x1 - x0) / seg, (y1 - y0) / seg
            return x0 + f * (x1 - x0), y0 + f * (y1 - y0), uy, -ux
        done += seg
    x, y = shape[-1]
    return x, y, 0.0, 0.0
