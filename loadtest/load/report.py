"""What a run measured, as the ``report.json`` dict: per run a time series in one-second
bins and the totals; per target the figures side by side. What a target cannot measure
(the relay has no acks, operators or SOS) is ``null`` and named in ``not_applicable``."""

from __future__ import annotations

import itertools
import math
import os
import platform
from collections import Counter
from typing import Any

from loadtest.load.config import LoadConfig
from loadtest.load.measured import RunData, Sample
from loadtest.load.stats import (
    add_counts,
    binned_percentiles,
    dense,
    label_value,
    percentile,
    summary,
)

_MB = 1024 * 1024
RELAY_NOT_APPLICABLE = [
    "accepted",
    "acked",
    "every_fix_acked",
    "sos",
    "refused",
    "conflated",
    "dropped",
]


def _merged(results: list[dict[str, Any]], key: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for result in results:
        add_counts(out, result[key])
    return out


def _metric_delta(samples: list[Sample], name: str) -> dict[str, float]:
    """How much each labelled sample of ``name`` grew during the run."""
    if not samples:
        return {}
    first, last = samples[0].metrics, samples[-1].metrics
    return {
        key: value - first.get(key, 0.0)
        for key, value in last.items()
        if key.startswith(name) and value - first.get(key, 0.0)
    }


def gc_pauses(delta: dict[str, float]) -> dict[str, dict[str, float | None]]:
    """Garbage collections during the run by generation: how many, their total and mean
    time, and the bound the longest stayed under (the histogram's smallest bucket holding
    them all; None past its last bucket)."""
    out: dict[str, dict[str, float | None]] = {}
    for generation in ("0", "1", "2"):
        label = f'generation="{generation}"'
        count = delta.get(f"doorstep_gc_pause_seconds_count{{{label}}}", 0.0)
        if not count:
            continue
        total = delta.get(f"doorstep_gc_pause_seconds_sum{{{label}}}", 0.0)
        bounds = sorted(
            (float(label_value(k, "le") or "inf"), v)
            for k, v in delta.items()
            if k.startswith("doorstep_gc_pause_seconds_bucket") and label in k
        )
        under = next((le for le, v in bounds if v >= count and le != float("inf")), None)
        out[generation] = {
            "count": int(count),
            "total_s": round(total, 3),
            "mean_ms": round(total / count * 1000, 2),
            "max_under_ms": None if under is None else round(under * 1000, 1),
        }
    return out


def _by_label(delta: dict[str, float], label: str) -> dict[str, int]:
    return {label_value(k, label) or "": int(v) for k, v in delta.items()}


def _per_second(samples: list[Sample], bins: int, value: Any) -> list[float | None]:
    """A per-second rate from samples taken about once a second (``value`` reads one)."""
    out: list[float | None] = []
    for a, b in itertools.pairwise(samples):
        va, vb = value(a), value(b)
        out.append(
            None if va is None or vb is None or b.t <= a.t else round((vb - va) / (b.t - a.t), 3)
        )
    return out[:bins]


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / _MB, 1)


def _sos(results: list[dict[str, Any]]) -> dict[str, Any]:
    sent: dict[str, float] = {}
    receipts: dict[int, dict[str, float]] = {}
    for result in results:
        sent.update(result["sos_sent"])
        receipts.update(result["incidents"])
    latencies = [
        (seen[cid] - at) * 1000
        for cid, at in sent.items()
        for seen in receipts.values()
        if cid in seen
    ]
    reached_all = sum(
        1 for cid in sent if receipts and all(cid in seen for seen in receipts.values())
    )
    return {
        "sent": len(sent),
        "acked": sum(r["sos_acked"] for r in results),
        "reached_every_operator": reached_all,
        "lost": len(sent) - reached_all,
        "per_operator": {
            str(j): sum(1 for cid in sent if cid in seen) for j, seen in receipts.items()
        },
        "latency_ms": {
            "p50": None if not latencies else round(percentile(latencies, 50) or 0, 2),
            "p99": None if not latencies else round(percentile(latencies, 99) or 0, 2),
            "count": len(latencies),
        },
    }


def build_run(config: LoadConfig, data: RunData) -> dict[str, Any]:
    """One run's entry in the report."""
    hub = data.target != "relay"
    results = data.results
    sent, acked, delivered = (_merged(results, k) for k in ("sent", "acked", "delivered"))
    latency: dict[int, list[float]] = {}
    for result in results:
        for slot, values in result["latency"].items():
            latency.setdefault(slot, []).extend(values)
    bins = max([math.ceil(config.seconds), *(k + 1 for k in (*sent, *delivered, *acked) if k >= 0)])
    samples = data.samples
    accepted_series = _per_second(
        samples, bins, lambda s: s.metrics.get("doorstep_fixes_accepted_total")
    )
    cpu_series = _per_second(samples, bins, lambda s: s.cpu_s)
    rss = [s.rss for s in samples if s.rss is not None]
    everything = [v for values in latency.values() for v in values]
    errors: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for result in results:
        errors.update(result["errors"])
        failures.update(result["failures"])
    drops = _by_label(_metric_delta(samples, "doorstep_queue_drops_total"), "reason")
    rejected = _by_label(_metric_delta(samples, "doorstep_frames_rejected_total"), "code")
    accepted_total = _metric_delta(samples, "doorstep_fixes_accepted_total")
    with_fixes = sum(r["with_fixes"] for r in results)
    cpu_values = [v for v in cpu_series if v is not None]
    connected_growth = (
        None
        if data.rss_idle is None or data.rss_connected is None or not data.sockets
        else round((data.rss_connected - data.rss_idle) / data.sockets / 1024, 1)
    )
    totals = {
        "sent": sum(sent.values()),
        "accepted": int(sum(accepted_total.values())) if hub and samples[0].metrics else None,
        "acked": sum(acked.values()) if hub else None,
        "delivered": sum(delivered.values()),
        "delivered_from_batches": sum(r["delivered_batched"] for r in results),
        "batched_fixes": sum(r["batched_fixes"] for r in results),
        "delivered_per_s": round(sum(delivered.values()) / config.seconds, 1),
        "technicians_fully_acked": sum(r["fully_acked"] for r in results) if hub else None,
        "every_fix_acked": (sum(r["fully_acked"] for r in results) == with_fixes) if hub else None,
    }
    return {
        "target": data.target,
        "round": data.round,
        "sockets": data.sockets,
        "totals": totals,
        "latency_ms": summary(everything),
        "sos": _sos(results) if hub else None,
        "server": {
            "measured": data.started_here,
            "cpu_per_wall_s": round(sum(cpu_values) / len(cpu_values), 3) if cpu_values else None,
            "rss_idle_mb": _mb(data.rss_idle),
            "rss_connected_mb": _mb(data.rss_connected),
            "rss_peak_mb": _mb(max(rss) if rss else None),
            "rss_end_mb": _mb(rss[-1] if rss else None),
            "rss_per_connection_kib": connected_growth,
        },
        "gc_pauses": gc_pauses(_metric_delta(samples, "doorstep_gc_pause_seconds"))
        if hub and samples[0].metrics
        else None,
        "refused": {"error_frames": dict(errors), "hub_rejected": rejected} if hub else None,
        "conflated": drops.get("conflated", 0) if hub and samples[0].metrics else None,
        "dropped": drops.get("slow_consumer", 0) if hub and samples[0].metrics else None,
        "failed_connections": {"total": sum(failures.values()), **failures},
        "generator": {
            "processes": len(results),
            "cpu_per_wall_s": [
                round(r["cpu_s"] / r["wall_s"], 3) if r.get("wall_s") else None for r in results
            ],
            "fix_late_max_ms": round(
                max((r.get("late_max_s", 0.0) for r in results), default=0.0) * 1000, 1
            ),
            "fixes_late_over_50ms": sum(r.get("late_50ms", 0) for r in results),
        },
        "not_applicable": [] if hub else RELAY_NOT_APPLICABLE,
        "problems": data.problems,
        "series": {
            "second": list(range(bins)),
            "sent": dense(sent, bins),
            "accepted": accepted_series if hub else None,
            "acked": dense(acked, bins) if hub else None,
            "delivered": dense(delivered, bins),
            "latency_p50_ms": binned_percentiles(latency, bins, 50),
            "latency_p95_ms": binned_percentiles(latency, bins, 95),
            "latency_p99_ms": binned_percentiles(latency, bins, 99),
            "cpu_per_wall_s": cpu_series,
            "rss_mb": [_mb(s.rss) for s in samples[1 : bins + 1]],
        },
    }


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return None if not present else round(percentile(present, 50) or 0.0, 2)


def _ratios(targets: dict[str, dict[str, Any]], a: str, b: str) -> dict[str, Any] | None:
    """``a``'s medians over ``b``'s, when both ran."""
    if a not in targets or b not in targets:
        return None

    def ratio(key: str) -> float | None:
        x, y = targets[a][key], targets[b][key]
        return None if x is None or not y else round(x / y, 2)

    return {k: ratio(k) for k in ("latency_p50_ms", "latency_p99_ms", "delivered_per_s")}


def build(config: LoadConfig, runs: list[dict[str, Any]], command: list[str]) -> dict[str, Any]:
    """The whole report: the configuration, the machine, every run, and hub/relay ratios."""
    targets: dict[str, dict[str, Any]] = {}
    for kind in ("relay", "hub", "hub-redis"):
        mine = [r for r in runs if r["target"] == kind]
        if mine:
            targets[kind] = {
                "rounds": len(mine),
                "latency_p50_ms": _median([r["latency_ms"]["p50"] for r in mine]),
                "latency_p99_ms": _median([r["latency_ms"]["p99"] for r in mine]),
                "delivered_per_s": _median([r["totals"]["delivered_per_s"] for r in mine]),
                "failed_connections": sum(r["failed_connections"]["total"] for r in mine),
            }
    hub_target = "hub" if "hub" in targets else "hub-redis"
    return {
        "command": command,
        "config": {
            "technicians": config.technicians,
            "customers": config.customer_count,
            "operators": config.operators,
            "rate_hz": config.rate_hz,
            "seconds": config.seconds,
            "sos_per_min": config.sos_per_min,
            "dropout": config.dropout,
            "processes": config.processes,
            "server": config.server,
        },
        "machine": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cores": os.cpu_count(),
            "note": "generator and server on the same machine, same clock",
        },
        "targets": targets,
        "hub_over_relay": _ratios(targets, hub_target, "relay"),
        "redis_over_embedded": _ratios(targets, "hub-redis", "hub"),
        "runs": runs,
    }
