"""Pure maths of the report: percentiles, one-second bins, Prometheus text."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) by linear interpolation, ``None`` when there is none."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = p / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max and the count, rounded for the report."""
    ordered = sorted(values)

    def rounded(x: float | None) -> float | None:
        return None if x is None else round(x, 2)

    return {
        "count": len(ordered),
        "p50": rounded(percentile(ordered, 50)),
        "p95": rounded(percentile(ordered, 95)),
        "p99": rounded(percentile(ordered, 99)),
        "max": rounded(ordered[-1] if ordered else None),
    }


def bin_index(t: float, start: float) -> int:
    """The one-second bin of wall time ``t`` in a run that began at ``start`` (-1 before)."""
    offset = t - start
    return -1 if offset < 0 else int(offset)


def add_counts(into: dict[int, int], other: Mapping[int, int]) -> None:
    """Add one process's per-bin counts to the total."""
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


def dense(counts: Mapping[int, float], bins: int) -> list[float]:
    """Counts per bin as a list of ``bins`` values (missing bins are 0)."""
    return [counts.get(i, 0) for i in range(bins)]


def binned_percentiles(
    by_bin: Mapping[int, Sequence[float]], bins: int, p: float
) -> list[float | None]:
    """The ``p``-th percentile of each bin's values (``None`` for an empty bin)."""
    out = []
    for i in range(bins):
        value = percentile(by_bin.get(i, ()), p)
        out.append(None if value is None else round(value, 2))
    return out


def prometheus_values(text: str, names: Iterable[str]) -> dict[str, float]:
    """Samples of the named metrics from Prometheus text, keyed ``name{labels}`` as written.

    Only what the report needs: the line's first token is the key, the second its value.
    """
    wanted = tuple(names)
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or not line.startswith(wanted):
            continue
        key, _, rest = line.rpartition(" ")
        if not key:
            continue
        try:
            out[key] = float(rest)
        except ValueError:
            continue
    return out


def label_value(key: str, label: str) -> str | None:
    """The value of ``label`` in a ``name{a="x",b="y"}`` key."""
    marker = f'{label}="'
    start = key.find(marker)
    if start < 0:
        return None
    start += len(marker)
    return key[start : key.find('"', start)]
