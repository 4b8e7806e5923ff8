"""How a synthetic technician really moves, one sample a second: drive, park, walk, visit.

The kinematics behind ``loadtest/traces.py``: a one-car model on a street grid (lights,
jams, turns, acceleration limits), then on foot to the door and back. Every draw comes
from the trip's own ``random.Random``, in a fixed order, so a seed gives the same trip.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from itertools import pairwise

from loadtest.trace_route import Line, simplify, staircase

BRAKE = 2.0  # m/s2, comfortable braking used to plan stops and turns
MAX_DECEL = 3.0  # m/s2, when the wanted speed drops (entering a jam)


@dataclass(slots=True)
class Sample:
    """The true state at one instant."""

    t: float
    x: float
    y: float
    v: float
    heading: float | None
    phase: str  # drive | walk | indoor | car


@dataclass(slots=True)
class Stop:
    s: float
    wait: float


class Motion:
    """The true samples of one trip, and the roads it planned and drove (for the truth)."""

    def __init__(
        self,
        rng: random.Random,
        kind: str,
        start_t: float,
        grid: float,
        accel: float,
        tags: list[str],
    ) -> None:
        self.rng = rng
        self.kind = kind
        self.start_t = start_t
        self.grid = grid  # street grid orientation, radians
        self.accel = accel
        self.tags = tags  # shared with the trip: what happened on it
        self.planned: list[tuple[float, float]] = []  # the navigation route, grid (u, v)
        # The road driven to the final stop, and when the car got there (truth for oracles).
        self.approach: Line | None = None
        self.approach_end_t = -math.inf

    def to_xy(self, u: float, v: float) -> tuple[float, float]:
        """A street-grid point (metres along/across the grid) as metres east/north."""
        c, s = math.cos(self.grid), math.sin(self.grid)
        return u * c - v * s, u * s + v * c

    def run(self) -> tuple[list[Sample], float, float, float | None]:
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
        stairs = staircase(rng, start, entry, extra)
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
    ) -> tuple[list[Sample], float, float, None]:
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
        stairs = staircase(rng, start, entry, extra)
        self.planned = [*stairs, (0.0, street)]
        grid = [*stairs, *tail]
        line = self._line(grid, side_street_from=len(grid) - 3)
        door_s = line.s_nearest(*self.to_xy(0.0, street))
        red_at_door = None
        if rng.random() < 0.5:
            # A red light next to the customer's house: stopped inside the fence for a minute.
            red_at_door = Stop(door_s + rng.uniform(-40.0, 40.0), rng.uniform(20.0, 60.0))
            self.tags.append("red_at_door")
        samples = self._drive(line, self.start_t, stop_near_end=True, extra_stop=red_at_door)
        self.approach, self.approach_end_t = line, samples[-1].t
        return samples, line.length, straight, None

    def _line(self, grid: list[tuple[float, float]], side_street_from: int) -> Line:
        """Plane polyline with speeds: short legs and the last ones are side streets."""
        rng = self.rng
        points = simplify([self.to_xy(u, v) for u, v in grid])
        cruise = []
        for i, ((x0, y0), (x1, y1)) in enumerate(pairwise(points)):
            length = math.hypot(x1 - x0, y1 - y0)
            side = length < 700.0 or i == 0 or i >= side_street_from
            cruise.append(rng.uniform(5.0, 8.0) if side else rng.uniform(8.0, 14.0))
        turns = [rng.uniform(3.5, 6.0) for _ in points[1:-1]]
        return Line(points, cruise, turns)

    def _lights(self, line: Line, keep_clear_at_end: float) -> list[Stop]:
        """A light every 300-800 m; half are red when reached, for 0-60 s."""
        rng = self.rng
        stops = []
        s = rng.uniform(300.0, 800.0)
        while s < line.length - keep_clear_at_end:
            if rng.random() < 0.5:
                stops.append(Stop(s, rng.uniform(0.0, 60.0)))
            s += rng.uniform(300.0, 800.0)
        return stops

    def _jams(self, line: Line) -> list[tuple[float, float, float]]:
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
        line: Line,
        t: float,
        stop_near_end: bool,
        extra_stop: Stop | None = None,
        jams: bool = True,
    ) -> list[Sample]:
        """One-second kinematics along ``line`` from standstill to standstill at its end."""
        rng = self.rng
        stops = self._lights(line, keep_clear_at_end=0.0 if stop_near_end else 60.0)
        if extra_stop is not None:
            stops = sorted([*[p for p in stops if abs(p.s - extra_stop.s) > 50], extra_stop],
                           key=lambda p: p.s)  # fmt: skip
        crawl = self._jams(line) if jams else []
        corners = line.corners()
        x, y, h = line.at(0.0)
        out = [Sample(t, x, y, 0.0, h, "drive")]
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
            out.append(Sample(t, x, y, v, h, "drive"))
            at_light = next_stop < len(stops) and s >= stops[next_stop].s - 0.5
            if at_light and v < 0.5:
                v = 0.0
                for _ in range(round(stops[next_stop].wait)):
                    t += 1.0
                    out.append(Sample(t, x, y, 0.0, h, "drive"))
                next_stop += 1
            elif next_stop < len(stops) and s > stops[next_stop].s + 0.5:
                next_stop += 1
        out[-1].v = 0.0
        return out

    def _walk(
        self, t: float, a: tuple[float, float], b: tuple[float, float], speed: float
    ) -> list[Sample]:
        """On foot from a to b (plane metres), one sample a second, excluding the start."""
        length = math.hypot(b[0] - a[0], b[1] - a[1])
        heading = math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360.0
        out = []
        steps = max(math.ceil(length / speed), 1)
        for k in range(1, steps + 1):
            f = min(k * speed / length, 1.0) if length > 0 else 1.0
            v = speed if k < steps else 0.0
            out.append(
                Sample(
                    t + k, a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), v, heading, "walk"
                )
            )
        return out

    def _visit(self, t: float, car_uv: tuple[float, float]) -> list[Sample]:
        """Walk in, stay 30-90 min indoors (wandering a few metres), walk back to the car."""
        rng = self.rng
        car = self.to_xy(*car_uv)
        door_r, door_b = rng.uniform(0.0, 15.0), rng.uniform(0.0, 2 * math.pi)
        door = (door_r * math.cos(door_b), door_r * math.sin(door_b))
        pace = rng.uniform(1.1, 1.5)
        out = [Sample(t + k, *car, 0.0, None, "car") for k in range(1, rng.randint(10, 90))]
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
            out.append(Sample(t_in + k * step, x, y, 0.0, None, "indoor"))
        out += self._walk(out[-1].t, (x, y), car, pace)
        last = out[-1].t
        out += [Sample(last + k, *car, 0.0, None, "car") for k in range(1, rng.randint(20, 180))]
        return out

    def _drive_away(
        self, t: float, car: tuple[float, float], side: float, street: float
    ) -> list[Sample]:
        """On along the street, then a few legs towards the next job (2-4 km, ~5-10 min)."""
        rng = self.rng
        pu = car[0]
        first = (pu - side * rng.uniform(150.0, 500.0), street)
        second = (first[0], street + rng.choice((-1.0, 1.0)) * rng.uniform(500.0, 1500.0))
        third = (second[0] - side * rng.uniform(500.0, 1500.0), second[1])
        line = self._line([car, first, second, third], side_street_from=1)
        return self._drive(line, t, stop_near_end=True, jams=False)[1:]
