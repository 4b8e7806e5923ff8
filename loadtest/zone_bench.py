"""Point checks per second against 1k, 10k and 100k zones: STRtree index vs brute force.

    python -m loadtest.zone_bench [--out loadtest/results/zones.md]

Zones are random star-shaped hexagons (20-100 m across, never self-intersecting), one per
150 m cell of a square metric grid around Berlin, built in metres on a LocalProjection and
converted to lon/lat, so they do not overlap and density is the same at every size (the
grid just grows: 100k zones cover ~47 km x 47 km). Query points are uniform over the grid,
so roughly one check in ten lands in a zone.

Baseline, measured in the same run at every size: ``shapely.intersects_xy`` over all zones
at once for each point. That is the honest "no index" alternative: vectorised in C, so far
faster than a Python loop of ``polygon.contains`` (which would only flatter the index). The
ratio is what matters; the machines that run this are shared and noisy. The index is also
checked against the baseline on a sample of points, and its build time reported, since
``ZoneIndex.add``/``remove`` rebuild it.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import shapely

from geofence.geo import LocalProjection
from geofence.zones import Zone, ZoneIndex

CENTRE = (52.52, 13.405)
CELL_M = 150.0
SIZES = (1_000, 10_000, 100_000)


def make_zones(count: int, seed: int = 7) -> list[Zone]:
    """``count`` non-overlapping hexagons, one per grid cell, built in metres."""
    rng = np.random.default_rng(seed)
    side = math.ceil(math.sqrt(count))
    cell = np.arange(count)
    half = side * CELL_M / 2
    cx = (cell % side) * CELL_M - half + CELL_M / 2
    cy = (cell // side) * CELL_M - half + CELL_M / 2
    # Vertices at increasing angles around the centre can never cross each other.
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False) + rng.uniform(0, 1, (count, 1))
    radii = rng.uniform(15, 50, (count, 1)) * rng.uniform(0.7, 1.0, (count, 6))
    ring = np.stack([cx[:, None] + radii * np.cos(angles), cy[:, None] + radii * np.sin(angles)])
    ring = np.moveaxis(ring, 0, -1)
    metric = shapely.polygons(np.concatenate([ring, ring[:, :1]], axis=1))
    projection = LocalProjection(*CENTRE)

    def to_lonlat(xy: np.ndarray) -> np.ndarray:
        lat, lon = projection.to_latlon(xy[:, 0], xy[:, 1])  # type: ignore[arg-type]
        return np.column_stack([lon, lat])

    lonlat = shapely.transform(metric, to_lonlat)
    return [Zone(f"z{i}", "bench", None, geometry) for i, geometry in enumerate(lonlat)]


def random_points(count: int, zones: int, seed: int = 11) -> list[tuple[float, float]]:
    """(lat, lon) uniform over the grid the zones occupy."""
    rng = np.random.default_rng(seed)
    half = math.ceil(math.sqrt(zones)) * CELL_M / 2
    projection = LocalProjection(*CENTRE)
    xy = rng.uniform(-half, half, (count, 2))
    lat, lon = projection.to_latlon(xy[:, 0], xy[:, 1])  # type: ignore[arg-type]
    return list(zip(lat.tolist(), lon.tolist(), strict=True))


def rate(check: Callable[[float, float], object], points: list[tuple[float, float]]) -> float:
    """Checks per second, best of 3 passes over ``points``."""
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for lat, lon in points:
            check(lat, lon)
        best = min(best, time.perf_counter() - start)
    return len(points) / best


def run_size(count: int) -> dict[str, float]:
    zones = make_zones(count)
    start = time.perf_counter()
    index = ZoneIndex(zones)
    build_s = time.perf_counter() - start
    geometries = np.array([zone.geometry for zone in zones])

    def brute(lat: float, lon: float) -> list[int]:
        return np.flatnonzero(shapely.intersects_xy(geometries, lon, lat)).tolist()

    sample = random_points(500, count, seed=3)
    for lat, lon in sample:  # the index must agree with brute force before it is timed
        assert [int(z.id[1:]) for z in index.zones_at(lat, lon)] == brute(lat, lon)
    hits = sum(bool(index.zones_at(lat, lon)) for lat, lon in sample) / len(sample)
    # Brute force costs O(zones) per point: fewer points at larger sizes keep the run short.
    baseline_points = random_points(max(20, 2_000_000 // count), count)
    return {
        "zones": count,
        "index": rate(index.zones_at, random_points(20_000, count)),
        "baseline": rate(brute, baseline_points),
        "build_ms": build_s * 1000,
        "hit_rate": hits,
    }


def report(rows: list[dict[str, float]]) -> str:
    lines = [
        "# Zone benchmark: point checks per second (`ZoneIndex.zones_at`)",
        "",
        f"Python {platform.python_version()} on {platform.machine()}, shapely "
        f"{shapely.__version__}; best of 3 passes. Zones: random hexagons 20-100 m across, one "
        f"per {CELL_M:.0f} m grid cell around Berlin; points uniform over the grid. Baseline: "
        "`shapely.intersects_xy` over all zones per point (vectorised brute force, no index), "
        "same run, same zones.",
        "",
        "| zones | checks/s (index) | checks/s (baseline) | ratio vs baseline "
        "| index build | points in a zone |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['zones']:,.0f} | {row['index']:,.0f} | {row['baseline']:,.0f} "
            f"| {row['index'] / row['baseline']:,.1f}x | {row['build_ms']:,.1f} ms "
            f"| {row['hit_rate']:.0%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("loadtest/results/zones.md"))
    args = parser.parse_args()
    text = report([run_size(count) for count in SIZES])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
