"""ETA scoring: error by true time to arrival, against the straight-line baseline."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from loadtest.arrival.replay import Prediction
from loadtest.arrival.spec import TripSpec

# Time-to-arrival buckets of the issue, seconds: 0-2, 2-5, 5-10, 10-20 minutes.
HORIZONS_S: tuple[tuple[float, float], ...] = ((0, 120), (120, 300), (300, 600), (600, 1200))
# "Within 20 % of the truth": |eta - truth| <= 0.2 x truth.
WITHIN = 0.2


@dataclass(frozen=True)
class HorizonScore:
    """ETA errors for fixes whose true time to arrival lies in [lo_s, hi_s)."""

    lo_s: float
    hi_s: float
    n: int
    mae_s: float
    baseline_mae_s: float
    within: float  # share of predictions within WITHIN of the truth
    baseline_within: float
    # Ours with a routing engine's distances (nan when the replay had none).
    routed_mae_s: float = math.nan
    routed_within: float = math.nan
    # Share of predictions whose band held the true time to arrival, and the band's median
    # width (nan where the predictions carried no band).
    in_band: float = math.nan
    band_width_s: float = math.nan
    routed_in_band: float = math.nan
    routed_band_width_s: float = math.nan

    @property
    def ratio(self) -> float:
        return self.mae_s / self.baseline_mae_s if self.baseline_mae_s else math.nan

    @property
    def routed_ratio(self) -> float:
        return self.routed_mae_s / self.baseline_mae_s if self.baseline_mae_s else math.nan


@dataclass(frozen=True, slots=True)
class EtaSample:
    trip_id: str
    horizon_s: float
    error_s: float
    baseline_error_s: float
    routed_error_s: float | None = None
    band: tuple[float, float] | None = None
    routed_band: tuple[float, float] | None = None


def eta_samples(
    specs: Mapping[str, TripSpec], predictions: Iterable[Prediction]
) -> Iterator[EtaSample]:
    """Predictions of trips with a true arrival, made before it: (horizon, errors)."""
    for p in predictions:
        spec = specs.get(p.trip_id)
        if spec is None or not spec.visit or spec.arrived_t is None:
            continue
        horizon = spec.arrived_t - p.t
        if horizon >= 0:
            routed = None if p.routed_s is None else p.routed_s - horizon
            yield EtaSample(
                p.trip_id,
                horizon,
                p.eta_s - horizon,
                p.baseline_s - horizon,
                routed,
                p.band,
                p.routed_band,
            )


def horizon_score(lo: float, hi: float, samples: Sequence[EtaSample]) -> HorizonScore:
    chosen = [s for s in samples if lo <= s.horizon_s < hi]
    if not chosen:
        return HorizonScore(lo, hi, 0, math.nan, math.nan, math.nan, math.nan)
    n = len(chosen)
    routed = [(s.routed_error_s, s.horizon_s) for s in chosen if s.routed_error_s is not None]
    complete = len(routed) == n
    return HorizonScore(
        lo_s=lo,
        hi_s=hi,
        n=n,
        mae_s=sum(abs(s.error_s) for s in chosen) / n,
        baseline_mae_s=sum(abs(s.baseline_error_s) for s in chosen) / n,
        within=sum(1 for s in chosen if abs(s.error_s) <= WITHIN * s.horizon_s) / n,
        baseline_within=sum(1 for s in chosen if abs(s.baseline_error_s) <= WITHIN * s.horizon_s)
        / n,
        routed_mae_s=sum(abs(e) for e, _ in routed) / n if complete else math.nan,
        routed_within=sum(1 for e, h in routed if abs(e) <= WITHIN * h) / n
        if complete
        else math.nan,
        **_band_scores(chosen),
    )


def _band_scores(chosen: Sequence[EtaSample]) -> dict[str, float]:
    """How often the band held the truth, and how wide it was (median), ours and routed."""
    out: dict[str, float] = {}
    for prefix, bands in (
        ("", [(s.band, s.horizon_s) for s in chosen]),
        ("routed_", [(s.routed_band, s.horizon_s) for s in chosen]),
    ):
        known = [(band, h) for band, h in bands if band is not None]
        if known and len(known) == len(bands):
            out[f"{prefix}in_band"] = sum(lo <= h <= hi for (lo, hi), h in known) / len(known)
            out[f"{prefix}band_width_s"] = statistics.median(hi - lo for (lo, hi), _ in known)
    return out
