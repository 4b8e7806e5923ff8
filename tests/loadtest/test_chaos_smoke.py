"""`doorstep loadtest --chaos` end to end, short: two real hubs on a private redis-server, a
kill -9 and restart, a Redis restart and client drops in ~25 s, every check passing and the
report written.

The full soak (10 minutes) is a benchmark, not a test (loadtest/RESULTS.md, "Chaos soak").
Trip time runs 12x here so that technicians arrive and dwell long enough to be checked in;
the RSS bound is loose (120 MiB/min) because 25 s of a hub's life is all warm-up: this run
checks that the soak measures and judges, the unit tests (test_chaos_checks.py) the rules.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_chaos_soak_injects_every_fault_and_passes_every_check(tmp_path: Path) -> None:
    out = tmp_path / "chaos"
    command = [sys.executable, "-m", "realtime.cli", "loadtest", "--chaos", "--seconds", "25"]
    command += ["--technicians", "10", "--time-scale", "12", "--kill-every", "8"]
    command += ["--drop-every", "40", "--sos-rate", "12", "--warmup", "5", "--rss-bound", "120"]
    command += ["--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=70)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    injected = report["injected"]
    assert injected["kills"] >= 1 and injected["restarts"] == injected["kills"]
    assert injected["redis_restarts"] == 1
    assert injected["client_drops"] >= 1
    assert report["passed"] is True
    checks = report["checks"]
    assert set(checks) == {"sos", "check_ins", "fixes", "rss_flat"}
    assert all(check["passed"] for check in checks.values())
    assert checks["sos"]["pressed"] >= 1 and checks["sos"]["acked"] == checks["sos"]["pressed"]
    assert checks["check_ins"]["arrived"] >= 1
    assert checks["fixes"]["acked"] > 0 and checks["fixes"]["missing"] == 0
    assert checks["rss_flat"]["slope_mib_per_min"]
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "chaos:" in done.stderr and "kill -9" in done.stderr  # the progress lines
