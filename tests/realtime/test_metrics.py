"""The frame counters' cached children count into the same series as ``labels()``."""

from __future__ import annotations

from prometheus_client import generate_latest

from realtime.metrics import Metrics


def test_cached_children_count_into_the_labelled_series() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.frame_out("position").inc()
    metrics.frame_out("ack").inc()
    metrics.frames_out.labels(type="position").inc()  # the uncached way, same series
    metrics.frame_in("location").inc()
    assert metrics.frame_out("position") is metrics.frame_out("position")
    text = generate_latest(metrics.registry).decode()
    assert 'doorstep_frames_out_total{type="position"} 4.0' in text
    assert 'doorstep_frames_out_total{type="ack"} 1.0' in text
    assert 'doorstep_frames_in_total{type="location"} 1.0' in text


def test_two_hubs_in_one_process_keep_their_own_counts() -> None:
    first, second = Metrics(), Metrics()
    first.frame_in("sos").inc()
    assert 'doorstep_frames_in_total{type="sos"}' not in generate_latest(second.registry).decode()
