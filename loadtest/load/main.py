"""The whole ``doorstep loadtest``: every run in order, then ``report.json`` and ``report.png``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from loadtest.load import driver, plot, report
from loadtest.load.config import LoadConfig


def run(
    config: LoadConfig,
    *,
    target: str,
    compare: bool,
    rounds: int,
    compare_backends: bool = False,
    url: str | None,
    out: Path,
    command: list[str],
) -> dict[str, Any]:
    """Run the load against each target in turn and write the report into ``out``."""
    runs = []
    for kind, round_no in driver.order(target, compare, rounds, compare_backends):
        print(f"loadtest: {kind} round {round_no}: starting", file=sys.stderr, flush=True)
        runs.append(report.build_run(config, driver.run_once(config, kind, round_no, url)))
    result = report.build(config, runs, command)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    plot.write_png(result, out / "report.png")
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A few lines for the terminal: each run's headline figures."""
    lines = []
    for r in result["runs"]:
        lat, totals = r["latency_ms"], r["totals"]
        line = (
            f"{r['target']} round {r['round']}: sent {totals['sent']}, delivered"
            f" {totals['delivered']} ({totals['delivered_per_s']}/s), latency p50 {lat['p50']}"
            f" p99 {lat['p99']} max {lat['max']} ms, failed connections"
            f" {r['failed_connections']['total']}"
        )
        if r["target"] != "relay":
            sos = r["sos"]
            line += (
                f", every fix acked: {totals['every_fix_acked']},"
                f" SOS {sos['reached_every_operator']}/{sos['sent']} reached every operator"
            )
            full = (r.get("gc_pauses") or {}).get("2")
            if full:
                line += f", full GCs {full['count']} (mean {full['mean_ms']} ms)"
        lines.append(line)
    for key, what in (
        ("hub_over_relay", "hub / relay"),
        ("redis_over_embedded", "redis / embedded"),
    ):
        ratios = result.get(key)
        if ratios:
            lines.append(
                f"{what}: p50 {ratios['latency_p50_ms']}x, p99 {ratios['latency_p99_ms']}x,"
                f" delivered per s {ratios['delivered_per_s']}x"
            )
    return lines
