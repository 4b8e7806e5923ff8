"""The benchmark's markdown: a table per metric, policies side by side, and what they say.

Pure: the measured days in, text out. The summary paragraph is written from the numbers
(each policy against greedy-nearest, the baseline the issue names), so it cannot claim
what a run did not show.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import msgspec

from loadtest.dispatch_bench.metrics import DayMetrics, mean_metrics
from loadtest.dispatch_bench.world import WorldSpec

BASELINE = "greedy-nearest"


class Day(msgspec.Struct, frozen=True):
    seed: int
    bookings: int
    by_policy: dict[str, DayMetrics]  # in the report's column order


class LoadResult(msgspec.Struct, frozen=True):
    spec: WorldSpec
    days: list[Day]


class Column(msgspec.Struct, frozen=True):
    title: str
    field: str
    digits: int


TABLES = (
    Column("Mean customer wait (min, request to arrival, bookings served)", "mean_wait_min", 1),
    Column("p90 customer wait (min)", "p90_wait_min", 1),
    Column("Longest customer wait (min)", "max_wait_min", 1),
    Column("Unserved bookings (nobody came by the end of the day)", "unserved", 1),
    Column("Idle driving: km driven to jobs, total", "drive_km", 0),
    Column("Idle driving: km per job", "drive_km_per_job", 2),
    Column("Jobs per technician: std dev", "jobs_std", 2),
    Column("Jobs per technician: max - min", "jobs_range", 1),
    Column("Mean rating of the technician who came", "mean_rating", 3),
    Column("Runtime (s of the policy and simulation per simulated day)", "runtime_s", 2),
)


def render(results: Sequence[LoadResult], header: str, world_notes: str) -> str:
    """The whole report: the header, how the day is simulated, then one section per load."""
    parts = [header.rstrip(), "", world_notes.rstrip(), ""]
    for result in results:
        parts += [render_load(result), ""]
    return "\n".join(parts).rstrip() + "\n"


def render_load(result: LoadResult) -> str:
    spec = result.spec
    policies = list(result.days[0].by_policy) if result.days else []
    means = {p: mean_metrics([d.by_policy[p] for d in result.days]) for p in policies}
    lines = [
        f"## {spec.technicians} technicians, {spec.bookings:g} bookings a day expected "
        f"({len(result.days)} days)",
        "",
        summary(means, identical_policies(result)),
        "",
    ]
    for column in TABLES:
        lines += [f"### {column.title}", "", *table(result, policies, means, column), ""]
    return "\n".join(lines).rstrip()


def table(
    result: LoadResult, policies: list[str], means: dict[str, DayMetrics], column: Column
) -> list[str]:
    def cells(by_policy: dict[str, DayMetrics]) -> list[str]:
        return [fmt(getattr(by_policy[p], column.field), column.digits) for p in policies]

    rows = [
        "| day (seed) | bookings | " + " | ".join(policies) + " |",
        "|---|---:|" + "---:|" * len(policies),
    ]
    for day in result.days:
        rows.append(f"| {day.seed} | {day.bookings} | " + " | ".join(cells(day.by_policy)) + " |")
    mean_bookings = sum(d.bookings for d in result.days) / max(len(result.days), 1)
    rows.append(
        f"| **mean** | {mean_bookings:.1f} | " + " | ".join(f"**{c}**" for c in cells(means)) + " |"
    )
    return rows


def identical_policies(result: LoadResult) -> list[str]:
    """Policies whose every day's numbers equal the baseline's (same choices, in effect)."""
    same = []
    for day in result.days[:1]:
        for policy in day.by_policy:
            if policy != BASELINE and all(
                _same_outcome(d.by_policy[policy], d.by_policy[BASELINE]) for d in result.days
            ):
                same.append(policy)
    return same


def summary(means: dict[str, DayMetrics], same_as_baseline: Sequence[str] = ()) -> str:
    """What the mean of the days says: a short verdict, then each policy against the baseline."""
    if BASELINE not in means:
        raise ValueError(f"the summary compares against {BASELINE}, which did not run")
    base = means[BASELINE]
    lines = [" ".join(_verdicts(means, same_as_baseline)), ""]
    lines.append(
        f"- {BASELINE}: mean wait {base.mean_wait_min:.1f} min, p90 {base.p90_wait_min:.1f}, "
        f"longest {base.max_wait_min:.1f}, {base.unserved:.1f} unserved, "
        f"{base.drive_km_per_job:.2f} km per job, jobs per technician std dev "
        f"{base.jobs_std:.2f}, mean rating {base.mean_rating:.3f}."
    )
    for policy, m in means.items():
        if policy == BASELINE:
            continue
        lines.append(
            f"- {policy}: mean wait {m.mean_wait_min:.1f} min "
            f"({change(m.mean_wait_min, base.mean_wait_min)}), "
            f"p90 {m.p90_wait_min:.1f} ({change(m.p90_wait_min, base.p90_wait_min)}), "
            f"longest {m.max_wait_min:.1f} ({change(m.max_wait_min, base.max_wait_min)}), "
            f"{m.unserved:.1f} unserved, {m.drive_km_per_job:.2f} km per job "
            f"({change(m.drive_km_per_job, base.drive_km_per_job)}), std dev {m.jobs_std:.2f}, "
            f"mean rating {m.mean_rating:.3f}."
        )
    return "\n".join(lines)


def _verdicts(means: dict[str, DayMetrics], same_as_baseline: Sequence[str]) -> list[str]:
    base = means[BASELINE]
    out = ["Mean over the days (percentages against greedy-nearest)."]
    for title, field in (
        ("Shortest mean wait", "mean_wait_min"),
        ("Shortest p90", "p90_wait_min"),
        ("Least driving per job", "drive_km_per_job"),
        ("Fewest unserved", "unserved"),
        ("Most even workload (jobs std dev)", "jobs_std"),
    ):
        best = _best(means, lambda m, f=field: getattr(m, f))
        out.append(f"{title}: {', '.join(best)}.")
    for policy, m in means.items():
        rating_gain = m.mean_rating - base.mean_rating
        extra_wait = m.mean_wait_min - base.mean_wait_min
        if policy != BASELINE and policy not in same_as_baseline and extra_wait > 0:
            out.append(
                f"{policy} cost {extra_wait:.1f} min of mean wait for a technician rated "
                f"{rating_gain:+.3f} stars on average."
            )
    for policy in same_as_baseline:
        out.append(
            f"{policy} gave the same numbers as {BASELINE} on every day: with a queue this "
            "long there is seldom more than one free technician to choose from, so the oldest "
            "booking goes to whoever frees up first, whatever the weights."
        )
    starved = [
        p
        for p, m in means.items()
        if p.startswith("batch") and m.max_wait_min > 1.1 * base.max_wait_min
    ]
    if starved:
        out.append(
            f"The longest wait is more than 10 % longer under {', '.join(starved)} than under "
            f"{BASELINE}: a matching that minimises the batch's total cost serves the bookings "
            "nearest to the free technicians first, so a booking far from all of them can wait "
            "batch after batch; the `waited` weight (the wait so far off a pair's cost) "
            "bounds that."
        )
    return out


def _best(means: dict[str, DayMetrics], value: Callable[[DayMetrics], float]) -> list[str]:
    finite = {p: value(m) for p, m in means.items() if math.isfinite(value(m))}
    if not finite:
        return ["none"]
    low = min(finite.values())
    # Within 1 % counts as a tie: a smaller difference says nothing over a few days.
    return [p for p, v in finite.items() if v <= low + 0.01 * abs(low) + 1e-9]


def change(value: float, base: float) -> str:
    if not (math.isfinite(value) and math.isfinite(base)) or base == 0:
        return "n/a"
    return f"{100.0 * (value - base) / base:+.0f} %"


def fmt(value: float, digits: int) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:,.{digits}f}"


def _same_outcome(a: DayMetrics, b: DayMetrics) -> bool:
    # Runtime differs by nature; every outcome must match.
    return msgspec.structs.replace(a, runtime_s=0.0) == msgspec.structs.replace(b, runtime_s=0.0)
