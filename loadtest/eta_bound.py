"""How good can an ETA from fixes get at all? Oracle predictors scored like the estimator.

    python -m loadtest.eta_bound --trips 200 --seed 1 [--out FILE.md]

The issue asks for less than half the baseline's error (straight line at 8.33 m/s,
``geofence.eta.baseline_eta_s``) at every horizon before the true arrival: 0-2, 2-5, 5-10
and 10-20 minutes. This script bounds what any estimator working from the phone's fixes can
reach on the synthetic trips (``loadtest.traces``), by scoring predictors that cheat:

- they read the truth behind every fix (``Trace.true_positions``, ``Trace.phases``,
  ``Trace.route_left_m``, ``Trace.free_flow_left_s``): the true position instead of the
  noisy fix, the route actually driven (including an overshoot's loop), the cruise speed of
  every street, whether the technician is driving, stopped at a light, sitting in the
  parked car or walking in;
- they are fitted *in-sample*: each maps its feature to the median time to arrival of the
  very fixes it is then scored on. A live estimator fits on past trips only.

What is left of their error is mostly what no estimator can know in advance: the red
lights still ahead, a jam, how long the technician sits in the parked car. It is evidence,
not a proof: each oracle is a median per band of one feature, and a live estimator may use
features they do not (the technician's own recent speed, say: beyond 10 minutes the hub's
estimator with a routing engine does about as well as the distance oracle). But where even
the oracles that know the phase, or the trip's kind in advance, stay well above half the
baseline's error, a live estimator cannot be expected to get under it; the per-phase and
per-kind tables show where the error sits.

Predictors (medians per feature band, piecewise-linear between the bands' median points):

- distance oracle: route metres left along the approach (log-spaced bands);
- free-flow oracle: seconds left at each street's free-flow (cruise) speed (log-spaced);
- phase oracle: knows the phase. Driving (moving or stopped at a light / in a jam): bands
  of the free-flow seconds to where the road enters the fence (``free_flow_to_fence_s``:
  the arrival of a car that parks inside it), fitted on driving fixes only. In the parked
  car: the walk time plus the median of (time to arrival - walk time) in 10 s bands of the
  seconds already sat. Walking: the walk time, (distance to the door - fence radius) / 1.3 m/s.
- kind oracle: the phase oracle fitted per trip kind, so it also knows in advance whether
  the technician will park by the door, park up to 140 m away and walk, or miss the house
  and loop round the block: the one thing the per-kind tables show the phase oracle lacks.

After the car's final stop the route and free-flow features are 0 (the car has arrived at
its end of the road), so the first two oracles predict one value for sitting and walking.

Rows: every 2nd fix of each visit trip (``STRIDE``, to keep it fast) with the true arrival
after it. All of those fit the oracles and the ones 0-20 min before the arrival are scored.
``--fit scored`` fits on the scored rows only: that selects on the outcome (a fix 9 km out
is kept only if that trip happened to arrive within 20 min) and flatters the 10-20 min
horizon. Drive-pasts have no arrival and give no rows. Runs in-process: no hub, no I/O
besides ``--out``; 200 trips take about 20 s, most of it generating them.
"""

from __future__ import annotations

import argparse
import math
import statistics
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from geofence.eta import baseline_eta_s
from geofence.geo import distance_m
from loadtest.traces import Trace, generate

# The time-to-arrival buckets, seconds (the same as loadtest.arrival.eta_score.HORIZONS_S).
HORIZONS_S: tuple[tuple[float, float], ...] = ((0, 120), (120, 300), (300, 600), (600, 1200))
STRIDE = 2  # score every 2nd fix of a trace
WALK_MPS = 1.3  # the phase oracle's walking pace (trips walk at 1.1-1.5 m/s)
SIT_BAND_S = 10.0
TARGET_RATIO = 0.5  # the issue: less than half the baseline's error
# Log-spaced bands: [0, first), then edges growing by RATIO up to the largest value seen.
METRES_FIRST, SECONDS_FIRST, BAND_RATIO = 10.0, 2.0, 1.2

ORACLES = ("distance", "free-flow", "phase", "kind")
PHASES = ("drive", "light", "car", "walk", "indoor")
KINDS = ("normal", "park_walk", "overshoot")
DETAIL_HORIZONS = HORIZONS_S[:2]  # the per-phase and per-kind tables: 0-2 and 2-5 min
FIT_ALL, FIT_SCORED = "all", "scored"
FIT_TEXT = {
    FIT_ALL: "every sampled fix before the arrival",
    FIT_SCORED: "the scored fixes only (0-20 min before the arrival; selects on the outcome)",
}


@dataclass(frozen=True, slots=True)
class Row:
    """One fix before its trip's true arrival, with the truth the oracles read."""

    kind: str
    phase: str
    horizon_s: float  # true arrival - fix time
    baseline_s: float | None  # baseline ETA; None outside the scored horizons
    route_left_m: float  # 0 after the car's final stop
    free_flow_s: float  # 0 after the car's final stop
    to_fence_s: float  # free-flow seconds to where the road enters the fence; 0 after it
    sat_s: float  # seconds since the car's final stop (0 before it)
    walk_s: float  # max(distance to the door - radius, 0) / WALK_MPS, true position


# --- rows ------------------------------------------------------------------------------


def trace_rows(trace: Trace, stride: int = STRIDE) -> list[Row]:
    """Every ``stride``-th fix of ``trace`` made before its true arrival (none: drive-past)."""
    truth = trace.truth
    if truth.arrived_t is None:
        return []
    if not trace.phases or not trace.free_flow_left_s or not trace.route_left_m:
        raise ValueError(f"{truth.trip_id}: the trace carries no oracle truth (phases etc.)")
    horizon_max = HORIZONS_S[-1][1]
    stop_t = max(
        (f.t for f, ff in zip(trace.fixes, trace.free_flow_left_s, strict=True) if ff is not None),
        default=-math.inf,
    )
    rows = []
    for i in range(0, len(trace.fixes), stride):
        fix = trace.fixes[i]
        horizon = truth.arrived_t - fix.t
        if horizon < 0:
            break
        phase = trace.phases[i]
        free_flow, route_left = trace.free_flow_left_s[i], trace.route_left_m[i]
        to_fence = trace.free_flow_to_fence_s[i]
        walk = 0.0
        if free_flow is None:  # after the final stop: how far is the fence edge on foot?
            lat, lon = trace.true_positions[i]
            to_door = distance_m(lat, lon, truth.dest_lat, truth.dest_lon)
            walk = max(to_door - truth.radius_m, 0.0) / WALK_MPS
        baseline = None
        if horizon < horizon_max:
            baseline = baseline_eta_s(fix.lat, fix.lon, truth.dest_lat, truth.dest_lon)
        rows.append(
            Row(
                kind=truth.kind,
                phase=phase,
                horizon_s=horizon,
                baseline_s=baseline,
                route_left_m=route_left or 0.0,
                free_flow_s=free_flow or 0.0,
                to_fence_s=to_fence or 0.0,
                sat_s=max(fix.t - stop_t, 0.0) if free_flow is None else 0.0,
                walk_s=walk,
            )
        )
    return rows


def all_rows(traces: Iterable[Trace], stride: int = STRIDE) -> list[Row]:
    return [row for trace in traces for row in trace_rows(trace, stride)]


# --- band curves -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BandCurve:
    """Median target per feature band, linear between the bands' (median x, median y)."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def __call__(self, x: float) -> float:
        if not self.xs:
            return 0.0
        i = bisect_right(self.xs, x)
        if i == 0:
            return self.ys[0]
        if i == len(self.xs):
            return self.ys[-1]
        x0, x1, y0, y1 = self.xs[i - 1], self.xs[i], self.ys[i - 1], self.ys[i]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def log_edges(first: float, top: float, ratio: float = BAND_RATIO) -> list[float]:
    """Band edges 0, first, first*ratio, ... until past ``top``."""
    edges = [0.0, first]
    while edges[-1] <= top:
        edges.append(edges[-1] * ratio)
    return edges


def linear_edges(width: float, top: float) -> list[float]:
    return [width * k for k in range(math.floor(top / width) + 2)]


def fit_bands(pairs: Sequence[tuple[float, float]], edges: Sequence[float]) -> BandCurve:
    """(feature, target) pairs to a ``BandCurve`` over the bands between ``edges``."""
    bands: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for x, y in pairs:
        bands[bisect_right(edges, x)].append((x, y))
    points = sorted(
        (statistics.median(x for x, _ in band), statistics.median(y for _, y in band))
        for _, band in sorted(bands.items())
    )
    # Medians of neighbouring bands can coincide in x; keep the curve a function.
    xs: list[float] = []
    ys: list[float] = []
    for x, y in points:
        if xs and x <= xs[-1]:
            continue
        xs.append(x)
        ys.append(y)
    return BandCurve(tuple(xs), tuple(ys))


def fit_log_bands(pairs: Sequence[tuple[float, float]], first: float) -> BandCurve:
    top = max((x for x, _ in pairs), default=first)
    return fit_bands(pairs, log_edges(first, top))


# --- oracles ---------------------------------------------------------------------------

Predictor = Callable[[Row], float]
DRIVING = ("drive", "light")


def fit_oracles(rows: Sequence[Row]) -> dict[str, Predictor]:
    """The four oracles, fitted on ``rows`` (in-sample: the rows they will be scored on)."""
    distance = fit_log_bands([(r.route_left_m, r.horizon_s) for r in rows], METRES_FIRST)
    free_flow = fit_log_bands([(r.free_flow_s, r.horizon_s) for r in rows], SECONDS_FIRST)
    per_kind = {kind: fit_phase_oracle([r for r in rows if r.kind == kind]) for kind in KINDS}
    return {
        "distance": lambda r: distance(r.route_left_m),
        "free-flow": lambda r: free_flow(r.free_flow_s),
        "phase": fit_phase_oracle(rows),
        "kind": lambda r: per_kind[r.kind](r),
    }


def fit_phase_oracle(rows: Sequence[Row]) -> Predictor:
    """Knows the phase: free-flow bands while driving, sat-time bands in the parked car."""
    driving = fit_log_bands(
        [(r.to_fence_s, r.horizon_s) for r in rows if r.phase in DRIVING], SECONDS_FIRST
    )
    car = [r for r in rows if r.phase == "car"]
    sitting = fit_bands(
        [(r.sat_s, r.horizon_s - r.walk_s) for r in car],
        linear_edges(SIT_BAND_S, max((r.sat_s for r in car), default=0.0)),
    )

    def phase(row: Row) -> float:
        if row.phase in DRIVING:
            return driving(row.to_fence_s)
        if row.phase == "car":
            return row.walk_s + sitting(row.sat_s)
        return row.walk_s  # walking (indoors is inside the fence: after the arrival)

    return phase


# --- scoring ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Score:
    """MAE of the baseline and of each oracle over one group of scored rows."""

    label: str
    fixes: int
    share: float  # of the group's parent (horizon, or kind within a horizon)
    baseline_mae: float
    oracle_mae: dict[str, float]

    def ratio(self, oracle: str) -> float:
        return self.oracle_mae[oracle] / self.baseline_mae if self.baseline_mae else math.nan


@dataclass(frozen=True, slots=True)
class Bound:
    trips: int
    seed: int
    visits: int
    fit: str  # which rows fitted the oracles: FIT_ALL or FIT_SCORED
    horizons: tuple[Score, ...]
    phases: dict[str, tuple[Score, ...]]  # horizon label -> one Score per phase
    kinds: dict[str, tuple[Score, ...]]  # horizon label -> per kind: all, then its phases


def horizon_label(lo: float, hi: float) -> str:
    return f"{lo / 60:g}-{hi / 60:g} min"


def scored(rows: Sequence[Row], lo: float, hi: float) -> list[Row]:
    return [r for r in rows if lo <= r.horizon_s < hi and r.baseline_s is not None]


def score_group(
    label: str, rows: Sequence[Row], predictors: dict[str, Predictor], parent: int
) -> Score:
    def mae(predict: Callable[[Row], float]) -> float:
        if not rows:
            return math.nan
        return statistics.fmean(abs(predict(r) - r.horizon_s) for r in rows)

    return Score(
        label=label,
        fixes=len(rows),
        share=len(rows) / parent if parent else math.nan,
        baseline_mae=mae(lambda r: r.baseline_s or 0.0),
        oracle_mae={name: mae(predict) for name, predict in predictors.items()},
    )


def by_phase(rows: Sequence[Row], predictors: dict[str, Predictor]) -> tuple[Score, ...]:
    return tuple(
        score_group(phase, [r for r in rows if r.phase == phase], predictors, len(rows))
        for phase in PHASES
        if any(r.phase == phase for r in rows)
    )


def by_kind(rows: Sequence[Row], predictors: dict[str, Predictor]) -> tuple[Score, ...]:
    out: list[Score] = []
    for kind in KINDS:
        mine = [r for r in rows if r.kind == kind]
        out.append(score_group(f"{kind}: all", mine, predictors, len(rows)))
        out += [
            Score(f"{kind}: {s.label}", s.fixes, s.share, s.baseline_mae, s.oracle_mae)
            for s in by_phase(mine, predictors)
        ]
    return tuple(out)


def bound(traces: Sequence[Trace], seed: int, stride: int = STRIDE, fit: str = FIT_ALL) -> Bound:
    """Fit the oracles on ``traces`` and score them and the baseline per horizon."""
    rows = all_rows(traces, stride)
    if fit not in FIT_TEXT:
        raise ValueError(f"fit must be one of {tuple(FIT_TEXT)}, not {fit!r}")
    fitted = rows if fit == FIT_ALL else scored(rows, HORIZONS_S[0][0], HORIZONS_S[-1][1])
    predictors = fit_oracles(fitted)
    horizons = tuple(
        score_group(horizon_label(lo, hi), chosen, predictors, len(chosen))
        for lo, hi in HORIZONS_S
        for chosen in [scored(rows, lo, hi)]
    )
    phases, kinds = {}, {}
    for lo, hi in DETAIL_HORIZONS:
        chosen = scored(rows, lo, hi)
        phases[horizon_label(lo, hi)] = by_phase(chosen, predictors)
        kinds[horizon_label(lo, hi)] = by_kind(chosen, predictors)
    visits = sum(1 for t in traces if t.truth.arrived_t is not None)
    return Bound(len(traces), seed, visits, fit, horizons, phases, kinds)


# --- markdown --------------------------------------------------------------------------


def _s(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0f} s"


def _x(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def horizon_table(scores: Sequence[Score]) -> list[str]:
    head = "| horizon | fixes | baseline MAE |" + "".join(
        f" {name} oracle MAE | ratio |" for name in ORACLES
    )
    lines = [head, "|---|---:|---:|" + "---:|---:|" * len(ORACLES)]
    for s in scores:
        cells = "".join(f" {_s(s.oracle_mae[n])} | {_x(s.ratio(n))} |" for n in ORACLES)
        lines.append(f"| {s.label} | {s.fixes} | {_s(s.baseline_mae)} |{cells}")
    return lines


def detail_table(first: str, scores: Sequence[Score]) -> list[str]:
    lines = [
        f"| {first} | fixes | share | baseline MAE | phase oracle MAE | ratio"
        " | kind oracle MAE | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        lines.append(
            f"| {s.label} | {s.fixes} | {s.share:.0%} | {_s(s.baseline_mae)} |"
            f" {_s(s.oracle_mae['phase'])} | {_x(s.ratio('phase'))} |"
            f" {_s(s.oracle_mae['kind'])} | {_x(s.ratio('kind'))} |"
        )
    return lines


def format_markdown(result: Bound) -> str:
    best = {s.label: min(s.ratio(n) for n in ORACLES) for s in result.horizons}
    missed = [label for label, ratio in best.items() if not ratio < TARGET_RATIO]
    verdict = (
        "Every horizon has an oracle under half the baseline's error."
        if not missed
        else "Not even an oracle halves the baseline's error at: " + ", ".join(missed) + "."
    )
    lines = [
        f"# ETA oracle bound: seed {result.seed}, {result.trips} trips ({result.visits} visits)",
        "",
        "What predictors that cheat reach (`python -m loadtest.eta_bound`): evidence of what "
        "an ETA from fixes can reach, not a proof. The oracles CHEAT: they read the true "
        "position, phase, route driven and free-flow speed of every street, and are fitted "
        "in-sample on the very fixes they are scored on. "
        f"One fix in {STRIDE} before the true arrival; MAE in seconds of time to arrival; "
        "ratio = oracle MAE / baseline MAE (straight line at 8.33 m/s from the fix); the "
        f"target is < {TARGET_RATIO}. Oracles fitted on {FIT_TEXT[result.fit]}.",
        "",
        *horizon_table(result.horizons),
        "",
        verdict,
    ]
    for label, scores in result.phases.items():
        lines += ["", f"## {label} before arrival, by true phase", ""]
        lines += detail_table("phase", scores)
    for label, scores in result.kinds.items():
        lines += ["", f"## {label} before arrival, by trip kind and phase", ""]
        lines += ["Share: of the horizon's fixes on a kind's `all` row, else of the kind's.", ""]
        lines += detail_table("kind: phase", scores)
    return "\n".join(lines) + "\n"


# --- command line ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument(
        "--fit", choices=tuple(FIT_TEXT), default=FIT_ALL, help="rows the oracles are fitted on"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    traces = generate(args.trips, seed=args.seed)
    text = format_markdown(bound(traces, args.seed, fit=args.fit))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
