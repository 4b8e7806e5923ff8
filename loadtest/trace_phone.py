"""What a synthetic technician's phone reports: GPS noise, outliers, tunnels, dozing.

The fixes of ``loadtest/traces.py`` made from the true samples of ``trace_motion``: errors
correlated over seconds outdoors and minutes indoors, rare wild jumps, gaps, and fields
some phones never send. Draws come from the trip's own ``random.Random``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from geofence.model import Fix
from loadtest.trace_motion import Sample

SIGMA_PER_ACC = 1.0 / math.sqrt(-2.0 * math.log(1.0 - 0.68))  # per-axis sigma for a 68 % radius
# Single 200-800 m jumps (a cell or Wi-Fi fallback fix), per hour: rare on the road, a bit
# commoner indoors where the phone has no sky view.
OUTLIERS_PER_H = 1.0
OUTLIERS_PER_H_INDOOR = 1.5


class Phone:
    """Turns true samples into fixes; ``tags`` (shared with the trip) say what it did."""

    def __init__(
        self,
        rng: random.Random,
        tags: list[str],
        to_latlon: Callable[[float, float], tuple[float, float]],
    ) -> None:
        self.rng = rng
        self.tags = tags
        self.to_latlon = to_latlon

    def report(self, samples: list[Sample]) -> tuple[list[Fix], list[Sample]]:
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
        truths: list[Sample] = []
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

    def _fix(self, p: Sample, x: float, y: float, acc: float | None, has_speed: bool) -> Fix:
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

    def _tunnels(self, samples: list[Sample]) -> list[tuple[float, float]]:
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

    def _doze(self, samples: list[Sample]) -> list[tuple[float, float]]:
        """On 30 % of visits the phone dozes indoors: no fixes for 2-10 minutes."""
        rng = self.rng
        indoor = [p.t for p in samples if p.phase == "indoor"]
        if not indoor or rng.random() >= 0.3:
            return []
        self.tags.append("doze")
        start = rng.uniform(indoor[0] + 120.0, max(indoor[-1] - 900.0, indoor[0] + 121.0))
        return [(start, start + rng.uniform(120.0, 600.0))]
