"""Arrival intelligence over a real hub: ETAs, arriving, check-in, check-out, dispatch, zones."""

from __future__ import annotations

import asyncio
import json
import time
from itertools import pairwise
from typing import Any

from geofence.geo import bearing_deg, destination_point, distance_m
from tests.conftest import RunningHub, receive_json, receive_until

HOME = (52.5200, 13.4050)
INDOOR_ACC = 30.0


def drive(start: tuple[float, float], end: tuple[float, float], t0: float, speed: float):
    """1 Hz fixes along a straight line from start to end at a constant speed."""
    total = distance_m(*start, *end)
    bearing = bearing_deg(*start, *end)
    steps = max(1, int(total / speed))
    return [
        (t0 + i, *destination_point(*start, bearing, total * i / steps)) for i in range(steps + 1)
    ]


def stay(at: tuple[float, float], t0: float, seconds: int, step: int = 5):
    """Parked and gone indoors: the phone reports 30 m accuracy (check-in wants the move
    indoors; without it the hub waits 330 s, as for a car queued by the door)."""
    return [(t0 + i, *at, INDOOR_ACC) for i in range(0, seconds, step)]


async def send_track(tech, points, first_seq: int, acc: float = 8.0) -> int:
    """Send (t, lat, lon) points as batches of 50; returns the next seq."""
    seq = first_seq
    for start in range(0, len(points), 50):
        chunk = []
        for t, lat, lon, *own in points[start : start + 50]:
            fix_acc = own[0] if own else acc
            chunk.append({"seq": seq, "t": t, "lat": lat, "lon": lon, "acc": fix_acc})
            seq += 1
        await tech.send(json.dumps({"type": "batch", "points": chunk}))
        ack = await receive_until(tech, "ack")
        while ack["seq"] < seq - 1:
            ack = await receive_until(tech, "ack")
    return seq


async def collect(client, until_status: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = await receive_json(client, timeout)
        messages.append(message)
        if message["type"] == "status" and message["status"] == until_status:
            return messages


async def test_approach_check_in_and_check_out_drive_the_booking(hub: RunningHub):
    booking = await hub.create_booking(
        id="visit-1", technician_id="tech-a", destination={"lat": HOME[0], "lon": HOME[1]}
    )
    assert booking["status"] == "assigned"
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "tech-a"))
    await receive_until(tech, "ack")
    customer = await hub.connect(
        "/v1/ws/bookings/visit-1", await hub.token("customer", "cust-1", "visit-1")
    )
    assert (await receive_json(customer))["type"] == "snapshot"
    assert (await hub.post("/v1/bookings/visit-1/en_route")).status_code == 200

    t0 = time.time() - 3000
    start = destination_point(*HOME, 200.0, 2500.0)
    parked = destination_point(*HOME, 20.0, 10.0)
    approach = drive(start, parked, t0, speed=10.0)
    # Check-in needs the technician to stay a while (dwell): the first minutes of the visit.
    arrived_at = approach[-1][0]
    visit = stay(parked, arrived_at + 5, 600)
    seq = await send_track(tech, approach + visit[:40], 1)
    messages = await collect(customer, "arrived")
    etas = [m for m in messages if m["type"] == "eta"]
    statuses = [m["status"] for m in messages if m["type"] == "status"]
    assert statuses[0] == "en_route"
    assert statuses[-2:] == ["arriving", "arrived"]
    assert len(etas) >= 4
    assert etas[0]["seconds"] > 120 and etas[-1]["seconds"] < 60
    assert all(b["seconds"] <= a["seconds"] + 5 for a, b in pairwise(etas))
    assert all(e["low_s"] <= e["seconds"] <= e["high_s"] for e in etas)

    # Stay 10 minutes, start the service, then drive away.
    seq = await send_track(tech, visit[40:], seq)
    assert (await hub.post("/v1/bookings/visit-1/start")).status_code == 200
    leave_t0 = visit[-1][0] + 5
    away = drive(parked, destination_point(*HOME, 90.0, 3000.0), leave_t0, speed=8.0)
    await send_track(tech, away, seq)
    await collect(customer, "completed")

    async with hub.client() as http:
        final = (await http.get("/v1/bookings/visit-1")).json()
    assert final["status"] == "completed"
    # The real arrival: when the technician entered the fence, not when the hub was sure.
    first_inside = next(t for t, lat, lon in approach if distance_m(lat, lon, *HOME) < 75)
    assert abs(final["arrived_t"] - first_inside) < 15
    first_outside = next(t for t, lat, lon in away if distance_m(lat, lon, *HOME) > 75)
    assert abs(final["departed_t"] - first_outside) < 30
    assert abs(final["service_duration_s"] - (final["departed_t"] - final["arrived_t"])) < 1e-6
    events = {e["event"]: e for e in final["events"]}
    assert events["check_in"]["actor"] == "hub:arrivals" and events["check_in"]["cause"]
    assert events["check_out"]["actor"] == "hub:arrivals" and events["check_out"]["cause"]
    assert events["approach"]["cause"].startswith("ETA")


async def test_snapshot_carries_the_latest_eta(hub: RunningHub):
    await hub.create_booking(id="visit-2", technician_id="tech-b")
    await hub.post("/v1/bookings/visit-2/en_route")
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "tech-b"))
    await receive_until(tech, "ack")
    start = destination_point(*HOME, 0.0, 3000.0)
    await send_track(
        tech, drive(start, destination_point(*HOME, 0.0, 2000.0), time.time() - 200, 10), 1
    )
    customer = await hub.connect(
        "/v1/ws/bookings/visit-2", await hub.token("customer", "cust-1", "visit-2")
    )
    snapshot = await receive_json(customer)
    assert snapshot["eta"]["seconds"] > 60
    assert snapshot["eta"]["distance_m"] > 1500


async def test_dispatch_ranks_free_skilled_online_technicians_by_eta(hub: RunningHub):
    async with hub.client() as http:
        for tid, skills in (("near", ["plumbing"]), ("far", ["plumbing"]), ("nearest", [])):
            response = await http.put(f"/v1/technicians/{tid}", json={"skills": skills})
            assert response.status_code == 200
    positions = {"near": 1500.0, "far": 6000.0, "nearest": 300.0}
    for tid, metres in positions.items():
        tech = await hub.connect("/v1/ws/technician", await hub.token("technician", tid))
        await receive_until(tech, "ack")
        lat, lon = destination_point(*HOME, 45.0, metres)
        fix = {"type": "location", "seq": 1, "t": time.time(), "lat": lat, "lon": lon}
        await tech.send(json.dumps(fix))
        await receive_until(tech, "ack")
    await hub.create_booking(id="job", skills=["plumbing"])
    dry = await hub.post("/v1/bookings/job/dispatch?dry_run=1")
    assert dry.status_code == 200, dry.text
    ranking = [r["technician_id"] for r in dry.json()["ranking"]]
    assert ranking == ["near", "far"]  # "nearest" lacks the skill
    assert dry.json()["booking"]["status"] == "requested"
    etas = [r["eta_s"] for r in dry.json()["ranking"]]
    assert etas == sorted(etas) and etas[0] > 0

    done = await hub.post("/v1/bookings/job/dispatch")
    assert done.status_code == 200
    assert done.json()["booking"]["technician_id"] == "near"
    assert done.json()["booking"]["status"] == "assigned"

    # "near" is now busy: another plumbing job goes to "far"; a third finds nobody.
    await hub.create_booking(id="job-2", skills=["plumbing"])
    second = await hub.post("/v1/bookings/job-2/dispatch")
    assert second.json()["booking"]["technician_id"] == "far"
    await hub.create_booking(id="job-3", skills=["plumbing"])
    third = await hub.post("/v1/bookings/job-3/dispatch")
    assert third.status_code == 409 and third.json()["code"] == "no_technician_available"


async def test_booking_with_a_polygon_fence_and_bad_fences(hub: RunningHub):
    square = _square(HOME, 60.0)
    created = await hub.create_booking(id="gated", fence=square)
    assert created["fence"]["type"] == "Polygon"
    swapped = {
        "type": "Polygon",
        "coordinates": [[[lat, lon] for lon, lat in square["coordinates"][0]]],
    }
    unclosed = {"type": "Polygon", "coordinates": [square["coordinates"][0][:-1]]}
    for bad in (swapped, unclosed, {"type": "Point", "coordinates": [13.4, 52.5]}):
        async with hub.client() as http:
            response = await http.post(
                "/v1/bookings",
                json={
                    "customer_id": "c",
                    "destination": {"lat": HOME[0], "lon": HOME[1]},
                    "fence": bad,
                },
            )
        assert response.status_code == 422, response.text
        assert response.json()["code"] not in ("invalid_field", "")


def _square(center, half_m):
    corners = []
    for bearing in (45.0, 135.0, 225.0, 315.0):
        lat, lon = destination_point(*center, bearing, half_m * 2**0.5)
        corners.append([lon, lat])
    corners.append(corners[0])
    return {"type": "Polygon", "coordinates": [corners]}


async def test_zones_rest_and_leaving_the_service_area_during_a_visit_alerts(hub: RunningHub):
    area = {
        "type": "Feature",
        "properties": {"kind": "service_area", "name": "Mitte"},
        "geometry": _square(HOME, 1000.0),
    }
    async with hub.client() as http:
        put = await http.put("/v1/zones/mitte", json=area)
        assert put.status_code == 200, put.text
        assert put.json()["zones"][0]["kind"] == "service_area"
        assert (await http.get("/v1/zones/mitte")).json()["properties"]["name"] == "Mitte"
        assert (await http.get("/v1/zones")).json()["zones"] == ["mitte"]
        bad = await http.put("/v1/zones/bad", json={"type": "Feature", "geometry": None})
        assert bad.status_code == 422
    await hub.create_booking(id="visit-z", technician_id="tech-z")
    for step in ("en_route", "arrive", "start"):
        assert (await hub.post(f"/v1/bookings/visit-z/{step}")).status_code == 200
    ops = await hub.connect("/v1/ws/ops", await hub.token("operator", "op-1"))
    assert (await receive_json(ops))["type"] == "snapshot"
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "tech-z"))
    await receive_until(tech, "ack")
    now = time.time()
    inside = destination_point(*HOME, 90.0, 200.0)
    outside = destination_point(*HOME, 90.0, 3000.0)
    await send_track(tech, [(now - 20, *inside), (now - 10, *outside)], 1)
    alert = await receive_until(ops, "alert")
    assert alert["kind"] == "left_service_area"
    assert alert["zone_id"].startswith("mitte") and alert["booking_id"] == "visit-z"

    async with hub.client() as http:
        assert (await http.delete("/v1/zones/mitte")).status_code == 204
        assert (await http.get("/v1/zones/mitte")).status_code == 404
        assert (await http.delete("/v1/zones/mitte")).status_code == 404


async def test_zones_survive_a_restart(hub: RunningHub):
    area = {
        "type": "Feature",
        "properties": {"kind": "restricted"},
        "geometry": _square(HOME, 300.0),
    }
    async with hub.client() as http:
        assert (await http.put("/v1/zones/closed", json=area)).status_code == 200
    await hub.restart()
    async with hub.client() as http:
        assert (await http.get("/v1/zones/closed")).status_code == 200
    assert len(hub.hub.zoning.index) == 1


async def _eta_after_drive(hub: RunningHub, booking_id: str, technician_id: str):
    await hub.create_booking(id=booking_id, technician_id=technician_id)
    await hub.post(f"/v1/bookings/{booking_id}/en_route")
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", technician_id))
    await receive_until(tech, "ack")
    customer = await hub.connect(
        f"/v1/ws/bookings/{booking_id}", await hub.token("customer", "c", booking_id)
    )
    await receive_json(customer)
    start = destination_point(*HOME, 0.0, 3000.0)
    points = drive(start, destination_point(*HOME, 0.0, 2500.0), time.time() - 100, 10)
    seq = await send_track(tech, points[:5], 1)
    await asyncio.sleep(0.3)  # the route request runs in the background
    await send_track(tech, points[5:], seq)
    etas = []
    while True:
        message = await receive_json(customer)
        if message["type"] == "eta":
            etas.append(message)
            if len(etas) == 2:
                return etas[-1], distance_m(*points[-1][1:], *HOME)


async def test_eta_uses_the_routing_engine_when_configured(hub_factory, osrm):
    osrm.distance_m = 9000.0  # three times the ~3 km straight line: no circuity guess is that
    hub = await hub_factory(osrm_url=osrm.url, osrm_timeout_s=0.5)
    eta, straight = await _eta_after_drive(hub, "routed", "tech-r")
    assert osrm.seen, "the hub never asked the routing engine"
    coordinates = osrm.seen[0].path_params["coordinates"]
    assert coordinates.endswith(f"{HOME[1]:.6f},{HOME[0]:.6f}")
    # The engine's ratio (route / straight line where it was asked) scales the ETA.
    assert eta["distance_m"] > 2.5 * straight


async def test_a_failing_routing_engine_falls_back_to_straight_line_times_circuity(
    hub_factory, osrm
):
    osrm.answer = "error"
    hub = await hub_factory(osrm_url=osrm.url, osrm_timeout_s=0.5)
    eta, straight = await _eta_after_drive(hub, "unrouted", "tech-u")
    assert osrm.seen
    assert 1.0 * straight < eta["distance_m"] < 1.6 * straight  # circuity prior 1.35
    async with hub.client() as http:
        metrics = (await http.get("/metrics")).text
    assert "doorstep_routing_fallbacks_total 1.0" in metrics


async def test_a_completed_approach_teaches_the_learned_models_which_survive_a_restart(
    hub: RunningHub,
):
    await hub.create_booking(
        id="learn-1", technician_id="tech-l", destination={"lat": HOME[0], "lon": HOME[1]}
    )
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "tech-l"))
    await receive_until(tech, "ack")
    customer = await hub.connect(
        "/v1/ws/bookings/learn-1", await hub.token("customer", "cust-1", "learn-1")
    )
    await receive_json(customer)
    assert (await hub.post("/v1/bookings/learn-1/en_route")).status_code == 200
    assert await hub.hub.store.get_document("models", "travel_times") is None
    t0 = time.time() - 3000
    start = destination_point(*HOME, 90.0, 3000.0)
    parked = destination_point(*HOME, 90.0, 10.0)
    approach = drive(start, parked, t0, speed=10.0)
    await send_track(tech, approach + stay(parked, approach[-1][0] + 5, 600)[:40], 1)
    await collect(customer, "arrived")
    stored = json.loads(await hub.hub.store.get_document("models", "travel_times"))
    # One trip: a (distance, seconds) observation in each distance band it drove through.
    bands = {band for state, band, observations in stored["cells"] if observations}
    assert len(bands) >= 5
    # ...and the ETA's error bands: the ETA shown every 30 s of the 300 s approach.
    bands = json.loads(await hub.hub.store.get_document("models", "eta_error_bands"))
    samples = [o for _, observations in bands["cells"] for o in observations]
    assert 8 <= len(samples) <= 12
    await hub.restart()
    assert hub.hub.arrivals.travel_times.to_dict() == stored
    assert hub.hub.arrivals.error_bands.to_dict() == bands


async def test_an_estimate_goes_out_when_the_customer_would_see_it_change(hub: RunningHub):
    """A technician keeping to the estimate: every fix brings a position, but an eta frame
    only when the arrival time moves visibly or every 15 s (realtime/eta_throttle.py); the
    snapshot has the newest estimate all the same."""
    await hub.create_booking(
        id="steady", technician_id="tech-s", destination={"lat": HOME[0], "lon": HOME[1]}
    )
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "tech-s"))
    await receive_until(tech, "ack")
    token = await hub.token("customer", "cust-s", "steady")
    customer = await hub.connect("/v1/ws/bookings/steady", token)
    await receive_json(customer)
    assert (await hub.post("/v1/bookings/steady/en_route")).status_code == 200
    start = destination_point(*HOME, 90.0, 6000.0)
    points = drive(start, destination_point(*HOME, 90.0, 5600.0), time.time() - 100, 10.0)
    etas = []
    for seq, (t, lat, lon) in enumerate(points, start=1):
        # One at a time, each read before the next is sent: nothing is conflated.
        fix = {"type": "location", "seq": seq, "t": t, "lat": lat, "lon": lon, "acc": 8.0}
        await tech.send(json.dumps(fix))
        while (message := await receive_json(customer))["type"] != "position":
            etas += [message] if message["type"] == "eta" else []
        assert message["seq"] == seq
    assert len(points) == 40
    # Without the throttle: one per fix from the first estimate on (over 30). With it: the
    # first, a few visible moves while the estimator settles, and the 15 s heartbeats.
    assert 3 <= len(etas) <= 12, [round(e["arrival_t"]) for e in etas]
    assert all(b["t"] - a["t"] <= 15 for a, b in pairwise(etas))
    await customer.close()
    again = await hub.connect("/v1/ws/bookings/steady", token)
    snapshot = await receive_json(again)
    assert snapshot["eta"]["t"] == points[-1][0]
