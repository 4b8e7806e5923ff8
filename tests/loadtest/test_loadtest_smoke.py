"""`doorstep loadtest` end to end, small: the hub and the relay in one run, the report written.

The full runs are benchmarks (loadtest/RESULTS.md); this one checks that the tool starts its
servers, measures, writes report.json and report.png, and exits cleanly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_compare_run_reports_both_targets(tmp_path: Path) -> None:
    out = tmp_path / "report"
    command = [sys.executable, "-m", "realtime.cli", "loadtest", "--technicians", "20"]
    command += ["--seconds", "4", "--compare", "--sos-rate", "30", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    runs = {run["target"]: run for run in report["runs"]}
    assert set(runs) == {"hub", "relay"}
    for run in runs.values():
        assert run["totals"]["delivered"] > 0
        assert run["failed_connections"]["total"] == 0
        assert run["latency_ms"]["p50"] is not None
    hub = runs["hub"]
    assert hub["totals"]["every_fix_acked"] is True
    assert hub["sos"]["sent"] >= 1
    assert hub["sos"]["lost"] == 0
    assert hub["sos"]["reached_every_operator"] == hub["sos"]["sent"]
    assert runs["relay"]["sos"] is None
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "loadtest hub round 1" in done.stderr  # the progress line


def test_the_hub_on_redis_and_on_the_embedded_backend_in_one_run(tmp_path: Path) -> None:
    import redis

    out = tmp_path / "report"
    command = [sys.executable, "-m", "realtime.cli", "loadtest", "--technicians", "10"]
    command += ["--seconds", "3", "--compare-backends", "--sos-rate", "30", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    runs = {run["target"]: run for run in report["runs"]}
    assert set(runs) == {"hub", "hub-redis"}
    for run in runs.values():
        assert run["totals"]["every_fix_acked"] is True
        assert run["sos"]["reached_every_operator"] == run["sos"]["sent"] >= 1
    assert report["redis_over_embedded"]["delivered_per_s"] is not None
    assert report["hub_over_relay"] is None
    assert "redis / embedded" in done.stdout
    # The run's key prefix is gone from the shared Redis (by the hub's documented patterns).
    client = redis.Redis()
    try:
        assert not list(client.scan_iter(match="{loadtest-*", count=1000))
    finally:
        client.close()


def test_the_hub_served_by_granian_for_the_server_comparison(tmp_path: Path) -> None:
    out = tmp_path / "report"
    command = [sys.executable, "-m", "realtime.cli", "loadtest", "--technicians", "10"]
    command += ["--seconds", "3", "--server", "granian", "--target", "hub", "--sos-rate", "30"]
    command += ["--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["server"] == "granian"
    (hub,) = report["runs"]
    assert hub["totals"]["every_fix_acked"] is True
    assert hub["sos"]["reached_every_operator"] == hub["sos"]["sent"] >= 1
    # Read from granian's worker process, not its supervisor: it holds the sockets.
    assert hub["server"]["rss_per_connection_kib"] > 0
    assert hub["server"]["cpu_per_wall_s"] > 0
