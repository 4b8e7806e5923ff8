"""The CLI: run every policy on the same simulated days, print and write the markdown.

    python -m loadtest.dispatch_bench --days 5 --seed 1 --out loadtest/results/dispatch.md

Days are seeds ``seed .. seed + days - 1``; every load (``--load TECHNICIANS:BOOKINGS``,
repeatable) replays those same seeds. The only clock read is here: each policy's runtime
around ``simulate``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from loadtest.dispatch_bench.metrics import day_metrics
from loadtest.dispatch_bench.policies import policies
from loadtest.dispatch_bench.report import Day, LoadResult, render
from loadtest.dispatch_bench.simulate import simulate
from loadtest.dispatch_bench.world import (
    ARRIVAL_WEIGHTS_BY_HOUR,
    SHIFTS_H,
    SKILLS,
    TravelModel,
    WorldSpec,
    make_world,
)

# A day the fleet can serve, and the example day (300 bookings for 40 technicians:
# about 420 technician-hours of driving and work for 320 hours of shifts).
DEFAULT_LOADS = ((40, 150.0), (40, 300.0))
DEFAULT_BATCH_S = (60.0, 120.0)


def run(
    days: int, seed: int, loads: Sequence[tuple[int, float]], batch_s: Sequence[float]
) -> list[LoadResult]:
    results = []
    for technicians, bookings in loads:
        spec = WorldSpec(technicians=technicians, bookings=bookings)
        measured = []
        for day_seed in range(seed, seed + days):
            world = make_world(spec, day_seed)
            by_policy = {}
            for policy in policies(batch_s):
                started = time.perf_counter()
                day = simulate(world, policy)
                elapsed = time.perf_counter() - started
                by_policy[policy.name] = day_metrics(world, day, elapsed)
            measured.append(Day(seed=day_seed, bookings=len(world.bookings), by_policy=by_policy))
        results.append(LoadResult(spec=spec, days=measured))
    return results


def world_notes(batch_s: Sequence[float]) -> str:
    travel = TravelModel(seed=0)
    rush = ", ".join(f"{h:02d}" for h in sorted(travel.rush_hours))
    shifts = ", ".join(f"{a:02d}:00-{b:02d}:00" for a, b in SHIFTS_H)
    hours = ", ".join(f"{h:02d}: {w:g}" for h, w in ARRIVAL_WEIGHTS_BY_HOUR.items())
    batches = " and ".join(f"{w:g} s" for w in batch_s)
    lines = [
        "## The simulated day (`loadtest/dispatch_bench/world.py`)",
        "",
        f"- City: 10 km x 10 km. Road distance = straight line x a circuity drawn per pair of "
        f"places ({travel.circuity_min}-{travel.circuity_max}); speed {travel.free_kmh:g} km/h, "
        f"{travel.rush_kmh:g} km/h when a trip starts in a rush hour ({rush}).",
        "- Every policy sees the same ETA: the true travel time x (1 +- 15 %), the error fixed "
        "per (booking, technician). The simulation drives the noiseless time.",
        f"- Technicians start at home (uniform over the city) with 2-3 of {len(SKILLS)} skills, "
        f"a rating 3.5-5.0 and one of the shifts {shifts} in turn. They drive to a job, work "
        "for its duration and wait where it was; a job may run past the shift's end, a new one "
        "starts only within it.",
        "- Bookings: a Poisson process 08:00-19:00, constant within each hour, relative rate by "
        f"hour {hours}; one skill each, a place uniform over the city, 30-120 min of work. "
        "Customer wait = request to the technician's arrival. At 20:00 dispatch stops; what "
        "still waits is unserved (and has no wait in the wait tables: read them with the "
        "unserved count).",
        "- Policies (`loadtest/dispatch_bench/policies.py`), on the same days: "
        "**greedy-nearest** (the oldest waiting booking first, to the free skilled on-shift "
        "technician with the smallest ETA: `evaluate` with only the ETA weighted); "
        "**ranking** (today's dispatcher: the oldest waiting booking first, to the best "
        "`realtime.dispatch.evaluate` total with the default weights, ETA + rating + history "
        "+ fairness; history neutral); **batch-W** (every W s, all waiting bookings and free "
        "technicians through `realtime.batch_match.match`, each pair's cost that same total "
        "less `waited` (0.25) x the seconds the booking has waited, `dispatch.batch_cost`, "
        "the hub's batch cost: without it the oldest far booking loses every batch). "
        f"W = {batches}: a booking waits W/2 for its batch on average, so W must stay small "
        "against the minutes a better matching can save; two values show what doubling it "
        "costs. One-at-a-time policies decide after every event (a booking arrives, a "
        "technician frees up or starts a shift), batches only on their ticks.",
        "- Fairness counts today's jobs against the median of the technicians on shift. "
        "Jobs-per-technician spread is over all technicians (each has a shift every day).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.dispatch_bench", description=__doc__)
    parser.add_argument("--days", type=int, default=5, help="simulated days (seeds) per load")
    parser.add_argument("--seed", type=int, default=1, help="first day's seed")
    parser.add_argument(
        "--load",
        action="append",
        type=_load,
        metavar="TECHNICIANS:BOOKINGS",
        help="fleet size and expected bookings a day (repeatable; default 40:150 and 40:300)",
    )
    parser.add_argument(
        "--batch",
        action="append",
        type=float,
        metavar="SECONDS",
        help="batch interval (repeatable; default 60 and 120)",
    )
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be >= 1")
    loads = args.load or list(DEFAULT_LOADS)
    batch_s = args.batch or list(DEFAULT_BATCH_S)
    results = run(args.days, args.seed, loads, batch_s)
    command = "python -m loadtest.dispatch_bench " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    header = (
        "# Dispatch benchmark: greedy-nearest, today's ranking and batch matching\n\n"
        f"Written by `{command.strip()}` on {time.strftime('%Y-%m-%d')} "
        f"(Python {platform.python_version()}, {platform.machine()}; runtimes are one "
        "shared 2-core machine's, for comparison within the run only)."
    )
    text = render(results, header, world_notes(batch_s))
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


def _load(text: str) -> tuple[int, float]:
    try:
        technicians, bookings = text.split(":")
        return int(technicians), float(bookings)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a load is TECHNICIANS:BOOKINGS, like 40:300, not {text!r}"
        ) from None


if __name__ == "__main__":
    raise SystemExit(main())
