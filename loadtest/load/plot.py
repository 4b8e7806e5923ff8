"""``report.png``: latency percentiles and throughput per second, every run on the same
axes (colour says the percentile or the count; hub solid, relay dashed), so a ``--compare``
run reads at a glance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_STYLE = {"hub": "-", "hub-redis": ":", "relay": "--"}
_PERCENTILES = (("latency_p50_ms", "p50"), ("latency_p95_ms", "p95"), ("latency_p99_ms", "p99"))


def _masked(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def write_png(report: dict[str, Any], path: Path) -> None:
    """Draw the report's runs into ``path`` (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    figure, (latency, throughput) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for run in report["runs"]:
        series, style = run["series"], _STYLE.get(run["target"], "-")
        name = f"{run['target']} r{run['round']}"
        seconds = series["second"]
        for j, (key, label) in enumerate(_PERCENTILES):
            latency.plot(
                seconds,
                _masked(series[key]),
                style,
                color=colours[j],
                label=f"{name} {label}",
            )
        delivered, acked = colours[0], colours[2]
        throughput.plot(
            seconds, series["delivered"], style, color=delivered, label=f"{name} delivered"
        )
        if series.get("acked") is not None:
            throughput.plot(seconds, series["acked"], style, color=acked, label=f"{name} acked")
    config = report["config"]
    latency.set_title(
        f"{config['technicians']} technicians x {config['rate_hz']:g} Hz,"
        f" {config['customers']} customers, {config['seconds']:g} s"
    )
    latency.set_ylabel("send → customer receive (ms)")
    latency.set_yscale("log")
    latency.yaxis.set_major_formatter(ScalarFormatter())
    throughput.set_ylabel("positions (fixes) per second")
    throughput.set_xlabel("second of the run")
    for axes in (latency, throughput):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
