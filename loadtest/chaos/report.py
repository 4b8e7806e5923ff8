"""``report.json`` (the checks with their figures, what was injected, the per-second series)
and ``report.png`` (each hub process's RSS, and acked fixes per second with the faults
marked), like ``doorstep loadtest``'s own report."""

from __future__ import annotations

import os
import platform
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtest.chaos.checks import MIB, CheckResult
from loadtest.chaos.config import ChaosConfig
from loadtest.chaos.records import RssSample, SosRecord

_MARKS = {
    "kill": ("red", "kill -9"),
    "restart": ("green", "hub restart"),
    "redis_stop": ("purple", "Redis stop"),
    "redis_start": ("purple", "Redis start"),
}


def build(
    config: ChaosConfig,
    command: list[str],
    results: Sequence[CheckResult],
    injected: dict[str, Any],
    events: list[dict[str, Any]],
    series: list[dict[str, Any]],
    rss: Sequence[RssSample],
    sos: Sequence[SosRecord],
) -> dict[str, Any]:
    return {
        "command": " ".join(command),
        "machine": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cores": os.cpu_count(),
        },
        "config": {
            **asdict(config),
            "rss_min_judged_s": config.rss_min_judged_s,
            "rss_settle_s": config.rss_settle_s,
        },
        "passed": all(r.passed for r in results),
        "checks": {
            r.name: {"passed": r.passed, **r.figures, "problems": r.problems} for r in results
        },
        "injected": injected,
        "faults": [e for e in events if e["kind"] != "drop"],
        "series": series,
        "sos": [asdict(press) for press in sos],
        # Every sample, so the RSS check can be recomputed: series, s into the process's
        # life, s into the run, MiB, connections open to it.
        "rss": [
            [r.series, round(r.t_s, 2), r.run_s, round(r.rss / MIB, 2), r.connections] for r in rss
        ],
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for name, check in result["checks"].items():
        figures = {k: v for k, v in check.items() if k not in ("passed", "problems")}
        shown = ", ".join(f"{k} {v}" for k, v in figures.items())
        lines.append(f"{'PASS' if check['passed'] else 'FAIL'} {name}: {shown}")
        lines += [f"    {problem}" for problem in check["problems"]]
    injected = result["injected"]
    lines.append(", ".join(f"{k} {v}" for k, v in injected.items()))
    return lines


def write_png(result: dict[str, Any], rss: Sequence[RssSample], path: Path) -> None:
    """RSS per hub process over the run, and acked fixes per second with the faults."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (memory, load) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    by_series: defaultdict[str, list[RssSample]] = defaultdict(list)
    for sample in rss:
        by_series[sample.series].append(sample)
    for name, samples in sorted(by_series.items()):
        memory.plot([s.run_s for s in samples], [s.rss / MIB for s in samples], label=name)
    series = result["series"]
    seconds = [row["second"] for row in series]
    load.plot(seconds, [row["acked_per_s"] for row in series], label="acked fixes/s")
    load.plot(
        seconds, [row["technicians_connected"] for row in series], label="technicians connected"
    )
    labelled: set[str] = set()
    for fault in result["faults"]:
        colour, label = _MARKS.get(fault["kind"], ("grey", fault["kind"]))
        if fault["kind"] == "sos":
            continue
        for axes in (memory, load):
            axes.axvline(
                fault["at_s"],
                color=colour,
                alpha=0.5,
                linestyle="--",
                label=None if label in labelled or axes is memory else label,
            )
        labelled.add(label)
    config = result["config"]
    verdict = "all checks passed" if result["passed"] else "CHECKS FAILED"
    memory.set_title(
        f"chaos soak: 2 hubs on Redis, {config['technicians']} technicians x"
        f" {config['rate_hz']:g} Hz, {config['seconds']:g} s: {verdict}"
    )
    memory.set_ylabel("hub RSS (MiB), one line per process")
    load.set_ylabel("per second")
    load.set_xlabel("second of the run")
    for axes in (memory, load):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
