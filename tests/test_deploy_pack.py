"""The observability pack in deploy/ names only metrics the hub exports.

A dashboard or an alert rule that names a metric the hub does not export shows nothing and
fires never, silently. So every PromQL expression of the Grafana dashboard and of the alert
rules is read, and each metric it selects must be one of a hub's registry (its families
with the suffixes Prometheus sees: ``_total``, ``_bucket``, ``_sum``, ``_count``,
``_created``). The rules file is checked with ``promtool check rules`` when promtool is on
PATH (pip has no promtool; CI images with Prometheus do), else by its structure.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from realtime.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy/grafana/doorstep.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"

# Series Prometheus itself makes for every scrape target.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
# PromQL words that are not metric names (functions are recognised by their "(").
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
    | {"and", "or", "unless", "offset", "atan2", "inf", "nan"}
)
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}
RULE_KEYS = {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def exported_names() -> set[str]:
    """Every series name a hub's registry exports, the scrape-time gauges included."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        for suffix in SUFFIXES[family.type]:
            names.add(family.name + suffix)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (a small reading of PromQL: enough for the
    expressions of this pack, and strict: an unknown bare word counts as a metric)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values) out
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$__\w+", " ", text)  # Grafana's variables
    names = set()
    # Not right after a digit: the "h" of "offset 1h", the "e" of "1e3" are no names.
    for match in re.finditer(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                found.append((inner["title"], target["expr"]))
    return found


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_expression_reader_finds_metrics_and_skips_the_rest() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, kind) (rate(a_bucket{kind="sos",le="15.0"}[5m])))'
        " / on (kind) group_left b_total offset 1h > bool 3 and up"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "up"}
    assert metric_names('max(x{job="a{b}"}) > 30') == {"x"}
    assert metric_names("sum(rate(c_total[$__rate_interval]))") == {"c_total"}


def test_every_dashboard_expression_names_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exported = exported_names()
    expressions = dashboard_expressions(dashboard)
    assert len(expressions) >= 20
    for title, expr in expressions:
        unknown = metric_names(expr) - exported - PROMETHEUS_SERIES
        assert not unknown, f"panel {title!r} names {sorted(unknown)}, not exported"
        assert metric_names(expr), f"panel {title!r}: {expr!r} selects no metric"


def test_the_dashboard_shows_each_figure_of_the_operations_view() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used = {name for _, expr in dashboard_expressions(dashboard) for name in metric_names(expr)}
    for needed in (
        "doorstep_incident_time_to_ack_seconds_bucket",
        "doorstep_escalations_total",
        "doorstep_technicians_connected",
        "doorstep_technicians_on_visit",
        "doorstep_bookings_open",
        "doorstep_arrivals_total",
        "doorstep_eta_error_seconds_sum",
        "doorstep_eta_ranges_total",
        "doorstep_check_ins_total",
        "doorstep_ready",
        "doorstep_bus_dropped_total",
        "doorstep_task_restarts_total",
    ):
        assert needed in used, needed
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    assert dashboard["templating"]["list"][0]["type"] == "datasource"


def test_the_alert_rules_cover_the_four_conditions_and_name_exported_metrics() -> None:
    exported = exported_names()
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= {
        "DoorstepSosUnacknowledged",
        "DoorstepHubNotReady",
        "DoorstepRedisBusDropping",
        "DoorstepTaskRestarting",
    }
    for rule in rules:
        unknown = metric_names(rule["expr"]) - exported - PROMETHEUS_SERIES
        assert not unknown, f"alert {rule['alert']} names {sorted(unknown)}, not exported"
    sos = next(r for r in rules if r["alert"] == "DoorstepSosUnacknowledged")
    assert sos["expr"].endswith("> 30")  # "unacknowledged over 30 s"


def test_the_rules_file_has_the_structure_prometheus_reads() -> None:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(document) == {"groups"} and isinstance(document["groups"], list)
    group_names = [group["name"] for group in document["groups"]]
    assert len(group_names) == len(set(group_names))  # promtool refuses duplicates
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group["name"]
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS, rule
            assert isinstance(rule["alert"], str) and re.fullmatch(r"[A-Za-z_]\w*", rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            if "for" in rule:
                assert DURATION.match(rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert all(isinstance(v, str) for v in rule["labels"].values())
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
            assert all(isinstance(v, str) for v in rule["annotations"].values())


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
