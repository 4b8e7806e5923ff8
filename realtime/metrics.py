"""Prometheus metrics, one registry per app so several hubs can run in one test process.

Two kinds: counters and histograms moved where their event happens (a frame, an SOS
acknowledged, a check-in), and gauges read from the hub's own state when Prometheus scrapes
(``LiveFigures``: who is connected, bookings by status, unacknowledged incidents,
readiness), so that nothing is counted per fix for them. The Grafana dashboard and the
alert rules in ``deploy/`` name these metrics; tests/test_deploy_pack.py holds them to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger("doorstep.metrics")

# Seconds from an incident raised to an operator's first answer. Emergency call centres aim
# at 90 % answered within 15 s and 95 % within 20 s: edges at both, so the dashboard's
# quantiles against those targets are read off bucket edges, not interpolated across them.
TIME_TO_ACK_BUCKETS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0, 600.0)
# Seconds between a shown arrival time and the real one: from "spot on" to half an hour.
ETA_ERROR_BUCKETS = (15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0)


class ByLabel:
    """A one-label metric's children, looked up once each: ``labels()`` costs about 2 us a
    call and the frame counters are touched on every frame in and out (the hot path,
    loadtest/results/profile.md)."""

    def __init__(self, metric: Counter) -> None:
        self.metric = metric
        self._children: dict[str, Any] = {}

    def __call__(self, value: str) -> Any:
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = self.metric.labels(value)
        return child


class LiveFigures(msgspec.Struct, frozen=True):
    """The hub's state as the scrape-time gauges show it (``realtime/live_figures.py``).

    ``technicians_connected`` is this hub's own (sum it over hubs); the rest comes from
    the mirrors every hub keeps of the whole deployment (take the max over hubs).
    """

    technicians_connected: int = 0
    technicians_en_route: int = 0
    technicians_on_site: int = 0
    bookings_open: dict[str, int] = {}  # status -> count, open bookings only
    incidents_unacknowledged: dict[str, int] = {}  # kind -> count of open, unanswered ones
    oldest_unacknowledged_s: dict[str, float] = {}  # kind -> age of the oldest of them
    ready_checks: dict[str, bool] = {}  # what /readyz checks -> passing
    bus_dropped: int = 0  # bus publishes lost (Redis bus: a full queue or a failed send)


class LiveCollector:
    """Gauges computed from ``LiveFigures`` at each scrape. Until a source is set (a hub not
    built yet) the families are listed without samples, so their names are always known."""

    def __init__(self) -> None:
        self.source: Callable[[], LiveFigures] | None = None

    def collect(self) -> Iterator[Metric]:
        figures = None
        if self.source is not None:
            try:
                figures = self.source()
            except Exception:
                # A broken figure must not take /metrics (and every other metric) down.
                log.warning("live figures unavailable for this scrape", exc_info=True)
        connected = GaugeMetricFamily(
            "doorstep_technicians_connected", "Technicians with a socket open to this hub"
        )
        on_visit = GaugeMetricFamily(
            "doorstep_technicians_on_visit",
            "Technicians on a visit, by state: en_route (en route, arriving) or on_site"
            " (arrived, in service)",
            labels=["state"],
        )
        bookings = GaugeMetricFamily(
            "doorstep_bookings_open", "Open bookings, by status", labels=["status"]
        )
        unacknowledged = GaugeMetricFamily(
            "doorstep_incidents_unacknowledged",
            "Open incidents no operator has answered yet, by kind",
            labels=["kind"],
        )
        oldest = GaugeMetricFamily(
            "doorstep_incident_unacknowledged_oldest_seconds",
            "Age of the oldest open incident no operator has answered, by kind (0: none)",
            labels=["kind"],
        )
        ready = GaugeMetricFamily("doorstep_ready", "1 when /readyz answers ready, else 0")
        checks = GaugeMetricFamily(
            "doorstep_ready_check", "Each /readyz check: 1 passing, 0 failing", labels=["check"]
        )
        dropped = CounterMetricFamily(
            "doorstep_bus_dropped", "Bus publishes lost: a full send queue or a failed send"
        )
        if figures is not None:
            connected.add_metric([], figures.technicians_connected)
            on_visit.add_metric(["en_route"], figures.technicians_en_route)
            on_visit.add_metric(["on_site"], figures.technicians_on_site)
            for status, count in sorted(figures.bookings_open.items()):
                bookings.add_metric([status], count)
            for kind, count in sorted(figures.incidents_unacknowledged.items()):
                unacknowledged.add_metric([kind], count)
            for kind, age in sorted(figures.oldest_unacknowledged_s.items()):
                oldest.add_metric([kind], age)
            ready.add_metric([], 1.0 if all(figures.ready_checks.values()) else 0.0)
            for check, passing in sorted(figures.ready_checks.items()):
                checks.add_metric([check], 1.0 if passing else 0.0)
            dropped.add_metric([], figures.bus_dropped)
        yield from (connected, on_visit, bookings, unacknowledged, oldest, ready, checks, dropped)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.live = LiveCollector()
        r.register(self.live)
        self.connections = Gauge(
            "doorstep_connections", "Open WebSocket connections", ["role"], registry=r
        )
        self.frames_in = Counter(
            "doorstep_frames_in_total", "Frames received, by message type", ["type"], registry=r
        )
        self.frames_out = Counter(
            "doorstep_frames_out_total", "Frames sent, by message type", ["type"], registry=r
        )
        self.frame_in = ByLabel(self.frames_in)
        self.frame_out = ByLabel(self.frames_out)
        self.frames_rejected = Counter(
            "doorstep_frames_rejected_total", "Frames refused, by error code", ["code"], registry=r
        )
        self.fixes_accepted = Counter(
            "doorstep_fixes_accepted_total", "GPS fixes accepted for storage", registry=r
        )
        self.gc_pause_seconds = Histogram(
            "doorstep_gc_pause_seconds",
            "Event loop stopped by a garbage collection, by generation (2 is a full one)",
            ["generation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.ingest_publish_seconds = Histogram(
            "doorstep_ingest_publish_seconds",
            "From a technician frame arriving to its position being queued to every watcher",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=r,
        )
        self.queue_drops = Counter(
            "doorstep_queue_drops_total",
            "Messages not sent to a watcher: conflated (replaced by a newer one) or"
            " slow_consumer (connection closed with its queue full)",
            ["reason"],
            registry=r,
        )
        self.history_write_seconds = Histogram(
            "doorstep_history_write_seconds", "Duration of one batched history write", registry=r
        )
        self.history_pending = Gauge(
            "doorstep_history_pending", "Accepted fixes waiting to be written", registry=r
        )
        self.routing_fallbacks = Counter(
            "doorstep_routing_fallbacks_total",
            "Routing engine requests that failed; ETAs used straight line x circuity",
            registry=r,
        )
        self.incidents = Counter(
            "doorstep_incidents_total", "Incidents raised, by kind", ["kind"], registry=r
        )
        self.alerts = Counter(
            "doorstep_alerts_total", "Safety alerts raised, by kind", ["kind"], registry=r
        )
        self.escalations = Counter(
            "doorstep_escalations_total", "Escalation steps taken, by step", ["step"], registry=r
        )
        self.deliveries = Counter(
            "doorstep_deliveries_total",
            "Notification delivery attempts, by channel and success",
            ["channel", "ok"],
            registry=r,
        )
        self.task_restarts = Counter(
            "doorstep_task_restarts_total",
            "Background tasks restarted after they raised, by task",
            ["task"],
            registry=r,
        )
        self.closes = Counter(
            "doorstep_closes_total",
            "Connections closed by the hub, by close code",
            ["code"],
            registry=r,
        )
        self.time_to_ack = Histogram(
            "doorstep_incident_time_to_ack_seconds",
            "From an incident raised to an operator's first answer (ack, or resolve while"
            " still open), by kind",
            ["kind"],
            buckets=TIME_TO_ACK_BUCKETS,
            registry=r,
        )
        self.eta_error = Histogram(
            "doorstep_eta_error_seconds",
            "|shown arrival time - real arrival| of the ETAs a customer was shown (one per"
            " 30 s of an approach), scored at arrival, by horizon (time left to the arrival)",
            ["horizon"],
            buckets=ETA_ERROR_BUCKETS,
            registry=r,
        )
        self.eta_ranges = Counter(
            "doorstep_eta_ranges_total",
            "Shown ETA ranges scored at arrival, by horizon; held=yes when the real arrival"
            " fell inside the range",
            ["horizon", "held"],
            registry=r,
        )
        self.check_ins = Counter(
            "doorstep_check_ins_total",
            "Check-ins stored, by how they were decided: auto (the hub's presence detector)"
            " or manual (a person, through the API)",
            ["how"],
            registry=r,
        )
        self.arrivals = Counter(
            "doorstep_arrivals_total",
            "Check-ins against the promised window: on_time=yes (by its end), no (after),"
            " none (no window promised)",
            ["on_time"],
            registry=r,
        )
        self.bookings_created = Counter(
            "doorstep_bookings_created_total", "Bookings created (POST /v1/bookings)", registry=r
        )
        self.bookings_ended = Counter(
            "doorstep_bookings_ended_total",
            "Bookings that reached a final status, by status",
            ["status"],
            registry=r,
        )

    def read_live(self, source: Callable[[], LiveFigures]) -> None:
        """Take the scrape-time gauges from ``source`` (called once per scrape)."""
        self.live.source = source
