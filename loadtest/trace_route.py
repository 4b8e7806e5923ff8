"""Street geometry of a synthetic trip: polylines with speeds, grid staircases. Pure.

Split from the trace generator (``loadtest/traces.py``) so that the trip's story (drive,
park, visit, phone) reads apart from the arithmetic of lines in metres.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import pairwise


@dataclass
class Line:
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


def simplify(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
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


def split(total: float, parts: int, rng: random.Random) -> list[float]:
    weights = [rng.uniform(0.3, 1.0) for _ in range(parts)]
    scale = total / sum(weights)
    return [w * scale for w in weights]


def staircase(
    rng: random.Random, start: tuple[float, float], end: tuple[float, float], extra: float
) -> list[tuple[float, float]]:
    """Grid points (u, v) from start to end, arriving along v, ``extra`` m longer than L1.

    The extra length is a detour in u: the u legs overshoot by extra/2 and the last one comes
    back, which is what a route round a park, a river or a one-way system looks like.
    """
    du, dv = end[0] - start[0], end[1] - start[1]
    n_v = rng.randint(2, 3) if extra > 0 else rng.randint(1, 3)
    n_u = n_v if (extra > 0 or rng.random() < 0.5) else max(n_v - 1, 1)
    vs = split(dv, n_v, rng)
    if extra > 0:
        side = math.copysign(1.0, du) if abs(du) > 1 else rng.choice((-1.0, 1.0))
        us = [*split(du + side * extra / 2, n_u - 1, rng), -side * extra / 2]
    else:
        us = split(du, n_u, rng)
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
