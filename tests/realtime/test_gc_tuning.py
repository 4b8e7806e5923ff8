"""The garbage collector's settings (realtime/gc_tuning.py): parsed, applied by ``doorstep
serve``'s app once the hub has started (in a child process: the choice is process-wide),
never by a plain ``create_app``; and every collection timed into the pause histogram."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from realtime.gc_tuning import PauseWatch, parse_thresholds
from realtime.metrics import Metrics
from realtime.settings import SettingsError, load_settings
from tests.conftest import RunningHub

ROOT = Path(__file__).resolve().parents[2]


def test_thresholds_parse_three_positive_integers() -> None:
    assert parse_thresholds("50000, 20,10") == (50000, 20, 10)
    for bad in ("700,10", "700,10,10,1", "700,0,10", "-1,10,10", "a,b,c", ""):
        with pytest.raises(ValueError):
            parse_thresholds(bad)


def test_a_bad_setting_is_refused_at_start(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOORSTEP_GC_THRESHOLDS", "700,ten,10")
    with pytest.raises(SettingsError, match="DOORSTEP_GC_THRESHOLDS"):
        load_settings(data_dir=tmp_path)


def test_every_collection_is_timed_by_generation() -> None:
    metrics = Metrics()
    ticks = iter(range(100))
    watch = PauseWatch(metrics.gc_pause_seconds, clock=lambda: next(ticks) * 0.25)
    watch.install()
    try:
        gc.collect(2)
    finally:
        watch.remove()
    assert watch not in gc.callbacks
    text = generate_latest(metrics.registry).decode()
    # One full collection, stopped 0.25 s after it started by this clock.
    assert 'doorstep_gc_pause_seconds_count{generation="2"} 1.0' in text
    assert 'doorstep_gc_pause_seconds_sum{generation="2"} 0.25' in text


async def test_a_running_hub_exports_its_pauses(hub: RunningHub) -> None:
    gc.collect(1)
    async with httpx.AsyncClient(base_url=hub.http) as http:
        text = (await http.get("/metrics")).text
    assert 'doorstep_gc_pause_seconds_count{generation="1"}' in text
    count = next(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('doorstep_gc_pause_seconds_count{generation="1"}')
    )
    assert count >= 1


APPLY = """
import gc, json, sys
from pathlib import Path
from starlette.testclient import TestClient
from realtime.app import create_app
from realtime.settings import Settings
settings = Settings(data_dir=Path(sys.argv[1]), secret="s" * 40, platform_key="p" * 40)
before = gc.get_threshold()
with TestClient(create_app(settings, tune_gc=sys.argv[2] == "tune")):
    seen = {"before": before, "during": gc.get_threshold(), "frozen": gc.get_freeze_count()}
print(json.dumps(seen))
"""


@pytest.mark.parametrize("tune", [True, False], ids=["serve", "create_app"])
def test_serve_applies_the_setting_once_started_and_tests_do_not(tmp_path: Path, tune) -> None:
    env = dict(os.environ, DOORSTEP_GC_THRESHOLDS="40000,15,12", DOORSTEP_GC_FREEZE="true")
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", APPLY, str(tmp_path), "tune" if tune else "no"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["before"] == [700, 10, 10]
    if tune:
        assert seen["during"] == [40000, 15, 12]
        # The app, its hub and every module loaded by then are out of collections.
        assert seen["frozen"] > 10_000
    else:
        assert seen["during"] == [700, 10, 10]
        assert seen["frozen"] == 0
