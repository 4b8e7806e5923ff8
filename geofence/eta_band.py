"""The ETA's range, learned from how wrong the fleet's own ETAs turned out to be. Pure.

A band of "ETA +25 % / -35 %" is a guess about the traffic; whether it holds the arrival
four times in five is a fact that every completed approach tells us. ``ErrorBands`` keeps,
per band of shown ETA (log-spaced: 2 minutes out is not 20 minutes out), how long the
technician really took after an ETA of that size was shown, and answers with the range that
held ``coverage`` of those arrivals: the (1 - coverage) / 2 and (1 + coverage) / 2
quantiles of the error. Until a band has ``min_samples`` it answers None and the estimator
keeps its fixed-width band.

The promise is about what a customer sees when they look: "when the app said 3 minutes,
four arrivals in five came within this range". So trips are sampled in time (the ETA
shown every ``SAMPLE_EVERY_S``), not once per band: a trip whose ETA sat at "2 min" for
five minutes in a jam was wrong for five minutes, and weighs so.

Errors are kept relative to ``eta + SCALE_S``: within a band they scale with the ETA (a
jam costs minutes on a long trip, seconds on a short one), and the offset keeps the last
seconds from dividing by nothing. Between bands the quantiles are interpolated, so the
range does not jump when the ETA crosses a band edge.
"""

from __future__ import annotations

import statistics
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from typing import Any

# One sample of the shown ETA per this many seconds of an approach (see above).
SAMPLE_EVERY_S = 30.0
# Added to the ETA before relating an error to it: an arrival 30 s late on a "10 s" ETA is
# an error of 0.43, not of 3.
SCALE_S = 60.0


class ErrorBands:
    """Quantiles of the shown ETA's error per band of ETA, learned online from arrivals."""

    # Edges in seconds of shown ETA, 1.5x apart: narrow enough that the error's spread is
    # about the same across a band, wide enough to fill within a few dozen trips.
    EDGES: tuple[float, ...] = (0.0, 15.0, 30.0, 45.0, 60.0, 90.0, 135.0, 200.0, 300.0, 450.0,
                                675.0, 1000.0, 1500.0, 2250.0, 3400.0, 5000.0)  # fmt: skip

    def __init__(
        self, coverage: float = 0.8, min_samples: int = 40, max_samples: int = 1000
    ) -> None:
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage must be between 0 and 1, got {coverage}")
        # Four arrivals in five inside the range: wide enough to be trusted, narrow enough
        # to plan around. The rest splits evenly between early and late.
        self.coverage = coverage
        # Forty samples (from at least a dozen trips: one trip rarely spends more than two
        # minutes in a band) before a band's quantiles replace the fixed band: the 10th
        # percentile of fewer is mostly one unlucky trip.
        self.min_samples = min_samples
        # A window of the last few hundred trips: traffic, the fleet and the estimator
        # itself change.
        self.max_samples = max_samples
        self._cells: dict[int, deque[tuple[float, float]]] = {}  # band -> (eta, actual)
        self._points: list[tuple[float, float, float]] | None = None  # cache of _fit

    def band_of(self, eta_s: float) -> int:
        return max(0, min(bisect_right(self.EDGES, eta_s) - 1, len(self.EDGES) - 2))

    def observe(self, samples: Sequence[tuple[float, float]], arrived_t: float) -> int:
        """Learn from one completed approach: ``samples`` are (t, ETA shown at t), one per
        ``SAMPLE_EVERY_S``, before the arrival at ``arrived_t``. Returns how many were kept."""
        kept = 0
        for t, eta_s in samples:
            if t > arrived_t or eta_s < 0:
                continue
            cell = self._cells.setdefault(self.band_of(eta_s), deque(maxlen=self.max_samples))
            cell.append((eta_s, arrived_t - t))
            kept += 1
        self._points = None
        return kept

    def band(self, eta_s: float) -> tuple[float, float] | None:
        """(low, high) seconds that held ``coverage`` of past arrivals at this ETA; None
        while too few have been seen near it."""
        points = self._fit()
        if not points:
            return None
        eta_s = max(0.0, eta_s)
        xs = [p[0] for p in points]
        i = bisect_right(xs, eta_s)
        if i == 0 or i == len(points):
            _, q_low, q_high = points[0 if i == 0 else -1]
            if self.band_of(eta_s) != self.band_of(xs[0 if i == 0 else -1]):
                return None  # beyond the learned bands: no evidence here
        else:
            (x0, lo0, hi0), (x1, lo1, hi1) = points[i - 1], points[i]
            f = (eta_s - x0) / (x1 - x0)
            q_low, q_high = lo0 + f * (lo1 - lo0), hi0 + f * (hi1 - hi0)
        scale = eta_s + SCALE_S
        return max(0.0, eta_s + q_low * scale), max(0.0, eta_s + q_high * scale)

    def _fit(self) -> list[tuple[float, float, float]]:
        """(median ETA, low quantile, high quantile) of each band with enough samples."""
        if self._points is None:
            tail = (1.0 - self.coverage) / 2.0
            points = []
            for key in sorted(self._cells):
                cell = self._cells[key]
                if len(cell) < self.min_samples:
                    continue
                errors = sorted((actual - eta) / (eta + SCALE_S) for eta, actual in cell)
                points.append(
                    (
                        statistics.median(eta for eta, _ in cell),
                        _quantile(errors, tail),
                        _quantile(errors, 1.0 - tail),
                    )
                )
            self._points = points
        return self._points

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot, for the hub to persist between restarts."""
        return {
            "version": 1,
            "coverage": self.coverage,
            "min_samples": self.min_samples,
            "max_samples": self.max_samples,
            "cells": [[key, [list(o) for o in cell]] for key, cell in self._cells.items()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorBands:
        """Rebuild from ``to_dict``; raises ValueError on anything else."""
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("not a version 1 ETA error band model")
        try:
            model = cls(float(data["coverage"]), int(data["min_samples"]), int(data["max_samples"]))
            for key, observations in data["cells"]:
                model._cells[int(key)] = deque(
                    ((float(eta), float(actual)) for eta, actual in observations),
                    maxlen=model.max_samples,
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed ETA error band model: {exc}") from exc
        return model


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values (numpy's default method)."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])
