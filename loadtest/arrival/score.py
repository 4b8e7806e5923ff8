"""The issue's metrics over a replay: ETA by horizon, presence, and per case of trip."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from loadtest.arrival.eta_score import (
    HORIZONS_S,
    EtaSample,
    HorizonScore,
    eta_samples,
    horizon_score,
)
from loadtest.arrival.presence_score import PresenceScore, TripVerdict, judge_all, presence_score
from loadtest.arrival.replay import Replay
from loadtest.arrival.spec import TripSpec


@dataclass(frozen=True)
class CaseScore:
    """One kind of trip or one tag: how many, presence failures, ETA error over 0-20 min."""

    case: str
    trips: int
    failed_trips: int
    naive_failed_trips: int
    n: int
    mae_s: float
    baseline_mae_s: float
    routed_mae_s: float = math.nan


@dataclass(frozen=True)
class Report:
    trips: int
    scored_trips: int
    fixes: int
    predictions: int
    horizons: tuple[HorizonScore, ...]
    overall: HorizonScore
    ours: PresenceScore
    naive: PresenceScore
    cases: tuple[CaseScore, ...]
    verdicts: tuple[TripVerdict, ...]  # our detector, one per scored trip
    naive_verdicts: tuple[TripVerdict, ...]
    specs: Mapping[str, TripSpec]
    learned_trips: int
    circuity: float | None  # the learned global factor at the end
    routed: bool = False  # the replay had a routing engine: routed_* columns are filled

    @property
    def failures(self) -> list[TripVerdict]:
        return [v for v in self.verdicts if not v.ok]


def score(trips: Sequence[TripSpec], result: Replay) -> Report:
    """The issue's metrics, for our logic and the baselines, over trips that have truth."""
    specs = {spec.trip_id: spec for spec in trips}
    scored = [spec for spec in trips if spec.has_truth]
    verdicts = judge_all(scored, result.events, result.last_t)
    naive = judge_all(scored, result.naive_events, result.last_t)
    samples = list(eta_samples(specs, result.predictions))
    horizons = tuple(horizon_score(lo, hi, samples) for lo, hi in HORIZONS_S)
    overall = horizon_score(HORIZONS_S[0][0], HORIZONS_S[-1][1], samples)
    circuity = None
    if result.circuity is not None and result.learned_trips:
        circuity = float(result.circuity.to_dict()["global"][1])  # mean of what was observed
    return Report(
        trips=len(trips),
        scored_trips=len(scored),
        fixes=result.fixes,
        predictions=len(result.predictions),
        horizons=horizons,
        overall=overall,
        ours=presence_score(scored, verdicts),
        naive=presence_score(scored, naive),
        cases=tuple(case_scores(scored, verdicts, naive, samples)),
        verdicts=tuple(verdicts),
        naive_verdicts=tuple(naive),
        specs=specs,
        learned_trips=result.learned_trips,
        circuity=circuity,
        routed=result.routed_travel_times is not None,
    )


def case_scores(
    scored: Sequence[TripSpec],
    verdicts: Sequence[TripVerdict],
    naive: Sequence[TripVerdict],
    samples: Sequence[EtaSample],
) -> Iterator[CaseScore]:
    """Per kind of trip and per tag, so a failure can be traced to the situation causing it."""
    cases: dict[str, list[int]] = {}
    for i, spec in enumerate(scored):
        names = ([f"kind:{spec.kind}"] if spec.kind else []) + list(spec.tags)
        for name in names:
            cases.setdefault(name, []).append(i)
    by_trip: dict[str, list[EtaSample]] = {}
    lo, hi = HORIZONS_S[0][0], HORIZONS_S[-1][1]
    for s in samples:
        if lo <= s.horizon_s < hi:
            by_trip.setdefault(s.trip_id, []).append(s)
    for name in sorted(cases, key=lambda c: (not c.startswith("kind:"), c)):
        members = cases[name]
        chosen = [s for i in members for s in by_trip.get(scored[i].trip_id, [])]
        n = len(chosen)
        routed = [abs(s.routed_error_s) for s in chosen if s.routed_error_s is not None]
        yield CaseScore(
            case=name,
            trips=len(members),
            failed_trips=sum(1 for i in members if not verdicts[i].ok),
            naive_failed_trips=sum(1 for i in members if not naive[i].ok),
            n=n,
            mae_s=sum(abs(s.error_s) for s in chosen) / n if n else math.nan,
            baseline_mae_s=sum(abs(s.baseline_error_s) for s in chosen) / n if n else math.nan,
            routed_mae_s=sum(routed) / n if n and len(routed) == n else math.nan,
        )
