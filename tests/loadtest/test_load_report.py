"""The report from what the processes saw: totals, series, SOS reach, not-applicable fields."""

from __future__ import annotations

from pathlib import Path

from loadtest.load.config import LoadConfig
from loadtest.load.measured import RunData, Sample
from loadtest.load.report import build, build_run, gc_pauses

CONFIG = LoadConfig(technicians=2, operators=2, seconds=2.0)
MB = 1024 * 1024


def _result(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sent": {0: 2, 1: 2},
        "acked": {0: 1, 1: 3},
        "delivered": {0: 2, 1: 2},
        "latency": {0: [10.0, 20.0], 1: [30.0, 40.0]},
        "delivered_batched": 0,
        "errors": {},
        "failures": {},
        "technicians": 2,
        "fully_acked": 2,
        "with_fixes": 2,
        "batched_fixes": 0,
        "sos_sent": {"s0": 100.0, "s1": 101.0},
        "sos_acked": 2,
        "incidents": {0: {"s0": 100.05, "s1": 101.02}, 1: {"s0": 100.1}},
        "sockets": 6,
    }
    base.update(over)
    return base


def _hub_run() -> RunData:
    metrics = [
        {"doorstep_fixes_accepted_total": 0.0},
        {"doorstep_fixes_accepted_total": 2.0, 'doorstep_queue_drops_total{reason="conflated"}': 1},
        {
            "doorstep_fixes_accepted_total": 4.0,
            'doorstep_queue_drops_total{reason="conflated"}': 3,
            'doorstep_frames_rejected_total{code="stale_seq"}': 1,
        },
    ]
    samples = [
        Sample(t=100.0 + i, cpu_s=1.0 + 0.5 * i, rss=(50 + i) * MB, metrics=m)
        for i, m in enumerate(metrics)
    ]
    return RunData(
        "hub",
        1,
        True,
        start=100.0,
        rss_idle=40 * MB,
        rss_connected=46 * MB,
        sockets=6,
        samples=samples,
        results=[_result()],
    )


def test_a_hub_run_has_series_totals_and_sos_reach() -> None:
    run = build_run(CONFIG, _hub_run())
    assert run["totals"]["sent"] == 4
    assert run["totals"]["accepted"] == 4
    assert run["totals"]["acked"] == 4
    assert run["totals"]["every_fix_acked"] is True
    assert run["series"]["sent"] == [2, 2]
    assert run["series"]["accepted"] == [2.0, 2.0]
    assert run["series"]["latency_p50_ms"] == [15.0, 35.0]
    assert run["series"]["cpu_per_wall_s"] == [0.5, 0.5]
    assert run["latency_ms"]["max"] == 40.0
    assert run["conflated"] == 3
    assert run["dropped"] == 0
    assert run["refused"]["hub_rejected"] == {"stale_seq": 1}
    assert run["server"]["rss_per_connection_kib"] == 1024.0
    assert run["server"]["rss_peak_mb"] == 52.0
    sos = run["sos"]
    assert (sos["sent"], sos["reached_every_operator"], sos["lost"]) == (2, 1, 1)
    assert sos["per_operator"] == {"0": 2, "1": 1}
    assert sos["latency_ms"]["count"] == 3
    assert run["not_applicable"] == []
    assert run["generator"]["processes"] == 1


def test_the_relay_has_no_acks_sos_or_hub_counters() -> None:
    data = _hub_run()
    data.target = "relay"
    run = build_run(CONFIG, data)
    assert run["totals"]["acked"] is None
    assert run["totals"]["every_fix_acked"] is None
    assert run["sos"] is None
    assert run["series"]["acked"] is None
    assert "sos" in run["not_applicable"]


def test_the_report_puts_the_targets_side_by_side() -> None:
    hub = build_run(CONFIG, _hub_run())
    relay_data = _hub_run()
    relay_data.target = "relay"
    relay_data.results = [_result(latency={0: [5.0, 10.0]})]
    relay = build_run(CONFIG, relay_data)
    report = build(CONFIG, [relay, hub], ["doorstep", "loadtest"])
    assert set(report["targets"]) == {"hub", "relay"}
    assert report["hub_over_relay"]["latency_p50_ms"] == round(25.0 / 7.5, 2)
    assert report["config"]["customers"] == 2


def test_the_png_draws_both_targets_and_a_run_without_latencies(tmp_path: Path) -> None:
    from loadtest.load.plot import write_png

    hub = build_run(CONFIG, _hub_run())
    empty = _hub_run()
    empty.target = "relay"
    empty.results = [_result(latency={}, delivered={})]
    report = build(CONFIG, [build_run(CONFIG, empty), hub], ["doorstep", "loadtest"])
    write_png(report, tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_backends_side_by_side_and_the_collections_counted() -> None:
    embedded = build_run(CONFIG, _hub_run())
    on_redis_data = _hub_run()
    on_redis_data.target = "hub-redis"
    on_redis_data.results = [_result(latency={0: [50.0, 100.0]})]
    on_redis = build_run(CONFIG, on_redis_data)
    report = build(CONFIG, [embedded, on_redis], ["doorstep", "loadtest"])
    assert set(report["targets"]) == {"hub", "hub-redis"}
    assert report["redis_over_embedded"]["latency_p50_ms"] == round(75.0 / 25.0, 2)
    assert report["hub_over_relay"] is None
    assert on_redis["sos"] is not None  # a hub on Redis is a hub: acks, SOS, counters


def test_collections_by_generation_from_the_pause_histogram() -> None:
    g2 = 'generation="2"'
    delta = {
        f"doorstep_gc_pause_seconds_count{{{g2}}}": 3.0,
        f"doorstep_gc_pause_seconds_sum{{{g2}}}": 1.2,
        f'doorstep_gc_pause_seconds_bucket{{{g2},le="0.25"}}': 1.0,
        f'doorstep_gc_pause_seconds_bucket{{{g2},le="0.5"}}': 3.0,
        f'doorstep_gc_pause_seconds_bucket{{{g2},le="+Inf"}}': 3.0,
        'doorstep_gc_pause_seconds_count{generation="0"}': 10.0,
        'doorstep_gc_pause_seconds_sum{generation="0"}': 0.01,
        'doorstep_gc_pause_seconds_bucket{generation="0",le="+Inf"}': 10.0,
    }
    pauses = gc_pauses(delta)
    assert pauses["2"] == {"count": 3, "total_s": 1.2, "mean_ms": 400.0, "max_under_ms": 500.0}
    assert pauses["0"]["max_under_ms"] is None  # past the last finite bucket
    assert "1" not in pauses
