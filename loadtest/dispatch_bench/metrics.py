"""What a day under one policy comes to: the numbers the report compares.

- wait: request to the technician's arrival, in minutes, over the bookings served (a
  booking nobody served has no wait; it is counted in ``unserved`` instead, so read the two
  together). p90 is numpy's linear interpolation between order statistics.
- idle driving: road km driven to jobs (the only driving there is: a technician waits
  where the last job was), in total and per job.
- jobs per technician: population std dev and max - min over every technician with a shift
  that day (each one has, in the generated days).
- rating: the mean rating of the technician who came, which is what the ranking trades
  minutes for.
"""

from __future__ import annotations

import math
import statistics

import msgspec
import numpy as np

from loadtest.dispatch_bench.simulate import DayRun
from loadtest.dispatch_bench.world import World


class DayMetrics(msgspec.Struct, frozen=True):
    # Counts are floats so that a mean over days keeps its fraction.
    served: float
    unserved: float
    mean_wait_min: float
    p90_wait_min: float
    max_wait_min: float
    drive_km: float
    drive_km_per_job: float
    jobs_std: float
    jobs_range: float
    mean_rating: float
    runtime_s: float  # measured by the caller (pure code reads no clock)


def day_metrics(world: World, run: DayRun, runtime_s: float = 0.0) -> DayMetrics:
    waits = np.array([job.wait_s for job in run.jobs], dtype=float) / 60.0
    ratings = {t.id: t.rating for t in world.technicians}
    counts = dict.fromkeys(ratings, 0)
    for job in run.jobs:
        counts[job.technician_id] += 1
    per_tech = list(counts.values())
    drive = math.fsum(job.drive_km for job in run.jobs)
    served = len(run.jobs)
    nan = float("nan")
    return DayMetrics(
        served=float(served),
        unserved=float(len(run.unserved)),
        mean_wait_min=float(waits.mean()) if served else nan,
        p90_wait_min=float(np.percentile(waits, 90)) if served else nan,
        max_wait_min=float(waits.max()) if served else nan,
        drive_km=drive,
        drive_km_per_job=drive / served if served else nan,
        jobs_std=statistics.pstdev(per_tech) if per_tech else nan,
        jobs_range=float(max(per_tech) - min(per_tech)) if per_tech else nan,
        mean_rating=(
            math.fsum(ratings[job.technician_id] for job in run.jobs) / served if served else nan
        ),
        runtime_s=runtime_s,
    )


def mean_metrics(days: list[DayMetrics]) -> DayMetrics:
    """The mean of each number over days (a day's mean wait counts once, whatever its size)."""
    if not days:
        raise ValueError("no days to average")
    fields = DayMetrics.__struct_fields__
    return DayMetrics(**{f: statistics.fmean(getattr(d, f) for d in days) for f in fields})
