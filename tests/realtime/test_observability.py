"""Health, readiness and Prometheus metrics, as an orchestrator and a dashboard see them.

The contract (DESIGN.md): ``/healthz`` says the process is alive, ``/readyz`` that it can
serve (hub started, history writer healthy), ``/metrics`` is the Prometheus text format
with the ``doorstep_*`` families below.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningHub, receive_json, receive_until


async def scrape(hub: RunningHub) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``, by (name, labels)."""
    async with hub.client(None) as http:  # no credentials: scrapers do not have any
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str):
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_liveness_and_readiness(hub):
    async with hub.client(None) as http:
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {
            "hub": True,
            "history_writer": True,
            "store": True,
            "bus": True,
            "tasks": True,
        },
    }


async def test_metrics_follow_connections_and_frames(hub):
    await hub.create_booking(id="b1", technician_id="tech-1")
    assert (await hub.post("/v1/bookings/b1/en_route")).status_code == 200
    samples = await scrape(hub)
    assert value(samples, "doorstep_connections", role="technician") == 0

    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "tech-1"))
    assert (await receive_json(tech))["type"] == "ack"
    watcher = await hub.connect("/v1/ws/bookings/b1", await hub.token("customer", "cust-1", "b1"))
    assert (await receive_json(watcher))["type"] == "snapshot"

    def fix(seq: int) -> dict[str, Any]:
        return {"type": "location", "seq": seq, "t": time.time(), "lat": 52.5, "lon": 13.4}

    await tech.send(json.dumps(fix(1)))
    assert (await receive_until(watcher, "position"))["seq"] == 1  # an ETA follows each
    await tech.send(json.dumps({"type": "batch", "points": [fix(2), fix(3), fix(4)]}))
    assert (await receive_until(watcher, "position"))["seq"] == 4
    await tech.send("not json")
    assert (await receive_until(tech, "error"))["code"] == "invalid_json"
    while (await receive_until(tech, "ack"))["seq"] < 4:
        pass

    samples = await scrape(hub)
    assert value(samples, "doorstep_connections", role="technician") == 1
    assert value(samples, "doorstep_connections", role="customer") == 1
    assert value(samples, "doorstep_frames_in_total", type="location") == 1
    assert value(samples, "doorstep_frames_in_total", type="batch") == 1
    assert value(samples, "doorstep_frames_in_total", type="invalid") == 1
    assert value(samples, "doorstep_frames_rejected_total", code="invalid_json") == 1
    assert value(samples, "doorstep_frames_out_total", type="position") == 2
    assert value(samples, "doorstep_frames_out_total", type="snapshot") == 1
    assert value(samples, "doorstep_frames_out_total", type="ack") >= 2
    assert value(samples, "doorstep_fixes_accepted_total") == 4
    assert value(samples, "doorstep_ingest_publish_seconds_count") == 2
    assert value(samples, "doorstep_ingest_publish_seconds_sum") > 0
    assert value(samples, "doorstep_history_write_seconds_count") >= 1
    assert value(samples, "doorstep_history_pending") == 0

    # Leaving is counted too (the hub notices a close asynchronously: poll briefly).
    await tech.close()
    for _ in range(100):
        samples = await scrape(hub)
        if value(samples, "doorstep_connections", role="technician") == 0:
            break
        await asyncio.sleep(0.02)
    assert value(samples, "doorstep_connections", role="technician") == 0
    assert value(samples, "doorstep_connections", role="customer") == 1


async def test_metrics_count_closes_by_code(hub):
    await hub.create_booking(id="b1", technician_id="tech-1")
    watcher = await hub.connect("/v1/ws/bookings/b1", await hub.token("customer", "cust-1", "b1"))
    assert (await receive_json(watcher))["type"] == "snapshot"
    assert (await hub.post("/v1/bookings/b1/cancel")).status_code == 200
    assert (await receive_json(watcher))["status"] == "cancelled"
    await asyncio.wait_for(watcher.wait_closed(), 5)
    assert watcher.close_code == 1000

    refused = await hub.connect("/v1/ws/ops", "not-a-token")
    await asyncio.wait_for(refused.wait_closed(), 5)
    assert refused.close_code == 4401

    samples = await scrape(hub)
    assert value(samples, "doorstep_closes_total", code="1000") == 1
    assert value(samples, "doorstep_closes_total", code="4401") == 1
