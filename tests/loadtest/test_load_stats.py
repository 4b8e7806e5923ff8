"""The pure maths of the load report: percentiles, bins, Prometheus text, /proc/<pid>/stat."""

from __future__ import annotations

import pytest

from loadtest.load import stats
from loadtest.load.servers import parse_stat


def test_percentiles_interpolate_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 50) == 2.5
    assert stats.percentile(values, 100) == 4.0
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile([], 50) is None


def test_summary_names_the_tail_and_counts() -> None:
    result = stats.summary([float(v) for v in range(1, 101)])
    assert result["count"] == 100
    assert result["p50"] == pytest.approx(50.5)
    assert result["p99"] == pytest.approx(99.01)
    assert result["max"] == 100.0
    assert stats.summary([]) == {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}


def test_bins_are_whole_seconds_from_the_start() -> None:
    assert stats.bin_index(100.0, 100.0) == 0
    assert stats.bin_index(100.999, 100.0) == 0
    assert stats.bin_index(101.0, 100.0) == 1
    assert stats.bin_index(99.5, 100.0) == -1


def test_counts_merge_and_densify() -> None:
    total: dict[int, int] = {0: 1}
    stats.add_counts(total, {0: 2, 2: 5})
    assert stats.dense(total, 4) == [3, 0, 5, 0]


def test_binned_percentiles_leave_empty_seconds_empty() -> None:
    out = stats.binned_percentiles({0: [1.0, 3.0], 2: [5.0]}, 3, 50)
    assert out == [2.0, None, 5.0]


def test_prometheus_text_by_name_and_label() -> None:
    text = "\n".join(
        [
            "# HELP doorstep_queue_drops_total Messages not sent",
            "# TYPE doorstep_queue_drops_total counter",
            'doorstep_queue_drops_total{reason="conflated"} 12.0',
            'doorstep_queue_drops_created{reason="conflated"} 1.7e9',
            "doorstep_fixes_accepted_total 340.0",
            "doorstep_other_total 1.0",
        ]
    )
    got = stats.prometheus_values(
        text, ["doorstep_queue_drops_total", "doorstep_fixes_accepted_total"]
    )
    assert got == {
        'doorstep_queue_drops_total{reason="conflated"}': 12.0,
        "doorstep_fixes_accepted_total": 340.0,
    }
    assert stats.label_value('doorstep_queue_drops_total{reason="conflated"}', "reason") == (
        "conflated"
    )
    assert stats.label_value("doorstep_fixes_accepted_total", "reason") is None


def test_proc_stat_with_a_command_name_holding_spaces_and_parentheses() -> None:
    fields = ["S"] + ["0"] * 10 + ["150", "50"] + ["0"] * 8 + ["1000"] + ["0"] * 20
    cpu_s, rss = parse_stat("4242 (python (a b)) " + " ".join(fields))
    assert cpu_s == pytest.approx(200 / parse_stat.__globals__["_CLK_TCK"])
    assert rss == 1000 * parse_stat.__globals__["_PAGE"]
