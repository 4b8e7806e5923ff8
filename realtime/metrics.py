"""Prometheus metrics, one registry per app so several hubs can run in one test process."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
