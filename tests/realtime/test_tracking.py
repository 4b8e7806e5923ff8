"""Tracking end to end: technician fixes in, customer positions out, history on disk.

Against a real hub (uvicorn on an ephemeral port) with real WebSocket and HTTP clients. The
contract (DESIGN.md, docs/protocol.md):

* a technician's ``location``/``batch`` frames are acked with the highest seq stored
  durably; the same ack is the first message on (re)connect, so an offline buffer resumes
  without loss, and a seq is stored once however often it is resent;
* a customer's booking socket gets a ``snapshot``, then ``position`` and ``status``
  messages, only for that booking's technician and only while the booking is the
  technician's current visit (``en_route`` until check-out; test_visits.py has the rest),
  and is closed normally (1000) when the booking is over;
* the history is served as a GeoJSON Feature to operators.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedOK

from tests.conftest import RunningHub, receive_json, receive_until

# ------------------------------------------------------------------ helpers


def location(seq: int, t: float | None = None, **fields: Any) -> dict[str, Any]:
    """A ``location`` frame; each seq has its own spot on a line through Berlin."""
    return {
        "type": "location",
        "seq": seq,
        "t": time.time() if t is None else t,
        "lat": 52.5 + seq * 1e-4,
        "lon": 13.4 + seq * 2e-4,
        "acc": 5.0,
        **fields,
    }


def batch(points: list[dict[str, Any]]) -> str:
    return json.dumps({"type": "batch", "points": [{**p, "type": "location"} for p in points]})


async def technician(
    hub: RunningHub, technician_id: str = "tech-1"
) -> tuple[ClientConnection, int]:
    """A connected technician socket and the seq of its greeting ack."""
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", technician_id))
    greeting = await receive_json(tech)
    assert greeting["type"] == "ack"
    return tech, greeting["seq"]


async def customer(hub: RunningHub, booking_id: str) -> tuple[ClientConnection, dict[str, Any]]:
    """A connected customer socket and its snapshot."""
    token = await hub.token("customer", "cust-1", booking_id)
    client = await hub.connect(f"/v1/ws/bookings/{booking_id}", token)
    snapshot = await receive_json(client)
    assert snapshot["type"] == "snapshot"
    return client, snapshot


async def acked(tech: ClientConnection, seq: int, timeout: float = 5.0) -> None:
    """Read the technician socket up to the ack of ``seq``; an error frame fails the test.

    Acks are conflated (the newest replaces a pending one), so intermediate ones may be
    skipped, but an ack never goes past what was sent.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await receive_json(tech, deadline - loop.time())
        assert message["type"] != "error", message
        if message["type"] == "ack" and message["seq"] >= seq:
            assert message["seq"] == seq
            return


async def send_fixes(tech: ClientConnection, seqs: range, t0: float | None = None) -> None:
    """Send one ``location`` frame per seq and wait for the last one's ack."""
    t0 = time.time() - len(seqs) if t0 is None else t0
    for seq in seqs:
        await tech.send(json.dumps(location(seq, t0 + seq)))
    await acked(tech, seqs[-1])


def lon_lat(fix: dict[str, Any]) -> list[float]:
    """A fix as a GeoJSON position: [lon, lat], 6 decimals (~0.1 m, RFC 7946 section 11.2)."""
    return [round(fix["lon"], 6), round(fix["lat"], 6)]


async def track(hub: RunningHub, technician_id: str, **params: float) -> dict[str, Any]:
    token = await hub.token("operator", "op-1")
    async with hub.client(token) as http:
        response = await http.get(f"/v1/technicians/{technician_id}/track", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/geo+json")
    return response.json()


async def read_booking(hub: RunningHub, booking_id: str) -> dict[str, Any]:
    async with hub.client() as http:
        response = await http.get(f"/v1/bookings/{booking_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def closed_with(client: ClientConnection, code: int, timeout: float = 5.0) -> None:
    """The socket's next event is a close with this code (no further messages)."""
    with pytest.raises(ConnectionClosedOK):
        message = await asyncio.wait_for(client.recv(), timeout)
        pytest.fail(f"expected a close, got {message}")
    assert client.close_code == code


# ------------------------------------------------------------------ tracking and durability


async def test_a_hundred_fixes_reach_the_customer_in_order_and_survive_a_restart(hub_factory):
    # A burst that covers the whole run: the rate limit is not under test here.
    hub = await hub_factory(rate_burst=200)
    # A destination far from the fixes: the booking stays en_route (arrival has its own tests).
    await hub.create_booking(
        id="b1", technician_id="tech-1", destination={"lat": 48.137, "lon": 11.575}
    )
    assert (await hub.post("/v1/bookings/b1/en_route")).status_code == 200
    tech, resume_from = await technician(hub)
    assert resume_from == -1
    watcher, _ = await customer(hub, "b1")

    t0 = time.time() - 200
    sent = [location(seq, t0 + seq) for seq in range(1, 101)]
    for fix in sent:
        await tech.send(json.dumps(fix))
        # en_route: each fix also brings an "eta" (tested in test_arrival_e2e).
        position = await receive_until(watcher, "position")
        assert position == {
            "type": "position",
            "technician_id": "tech-1",
            "seq": fix["seq"],
            "t": fix["t"],
            "lat": fix["lat"],
            "lon": fix["lon"],
            "acc": 5.0,
        }
    await acked(tech, 100)

    await hub.restart()

    booking = await read_booking(hub, "b1")
    assert booking["status"] == "en_route"
    assert booking["technician_id"] == "tech-1"
    assert [(e["event"], e["to_status"]) for e in booking["events"]] == [
        ("create", "requested"),
        ("assign", "assigned"),
        ("en_route", "en_route"),
    ]
    feature = await track(hub, "tech-1")
    assert feature["type"] == "Feature"
    assert feature["geometry"]["type"] == "LineString"
    assert feature["geometry"]["coordinates"] == [lon_lat(f) for f in sent]
    assert feature["properties"]["times"] == [f["t"] for f in sent]
    assert feature["properties"]["seqs"] == list(range(1, 101))
    assert feature["properties"]["count"] == 100
    assert feature["properties"]["truncated"] is False


async def test_a_reconnecting_technician_resumes_without_loss_or_double_counting(hub):
    tech, resume_from = await technician(hub)
    assert resume_from == -1
    t0 = time.time() - 100
    await send_fixes(tech, range(1, 11), t0)
    await tech.close()

    tech, resume_from = await technician(hub)
    assert resume_from == 10  # everything up to 10 is on disk: resend from 11

    # An offline flush that overlaps what was stored (the ack for 8..10 was lost, say).
    await tech.send(batch([location(seq, t0 + seq) for seq in range(8, 16)]))
    await acked(tech, 15)
    # A batch made only of stored points is re-acked, not refused: the client trims its buffer.
    await tech.send(batch([location(seq, t0 + seq) for seq in range(1, 6)]))
    await acked(tech, 15)
    # A single fix at or below the stored seq is refused as stale.
    await tech.send(json.dumps(location(12, t0 + 12)))
    error = await receive_until(tech, "error")
    assert (error["code"], error["seq"]) == ("stale_seq", 12)

    feature = await track(hub, "tech-1")
    assert feature["properties"]["seqs"] == list(range(1, 16))
    assert feature["properties"]["times"] == [t0 + seq for seq in range(1, 16)]
    assert len(feature["geometry"]["coordinates"]) == 15


async def test_the_resume_point_survives_a_hub_restart(hub):
    tech, _ = await technician(hub)
    t0 = time.time() - 100
    await send_fixes(tech, range(1, 6), t0)

    await hub.restart()

    tech, resume_from = await technician(hub)
    assert resume_from == 5
    await tech.send(batch([location(seq, t0 + seq) for seq in range(3, 9)]))
    await acked(tech, 8)
    await tech.close()

    tech, resume_from = await technician(hub)
    assert resume_from == 8
    assert (await track(hub, "tech-1"))["properties"]["seqs"] == list(range(1, 9))


# ------------------------------------------------------------------ the track endpoint


async def test_the_track_is_filtered_by_fix_time(hub):
    tech, _ = await technician(hub)
    base = float(int(time.time()) - 1000)
    for seq in range(1, 11):
        await tech.send(json.dumps(location(seq, base + 10 * seq)))
    await acked(tech, 10)

    def seqs(feature: dict[str, Any]) -> list[int]:
        return feature["properties"]["seqs"]

    # Both bounds are inclusive.
    between = await track(hub, "tech-1", **{"from": base + 30, "to": base + 60})
    assert seqs(between) == [3, 4, 5, 6]
    assert between["properties"]["times"] == [base + 30, base + 40, base + 50, base + 60]
    assert (between["properties"]["from"], between["properties"]["to"]) == (base + 30, base + 60)
    assert seqs(await track(hub, "tech-1", **{"from": base + 85})) == [9, 10]
    assert seqs(await track(hub, "tech-1", to=base + 25)) == [1, 2]
    assert seqs(await track(hub, "tech-1", **{"from": base + 31, "to": base + 39})) == []

    async with hub.client(await hub.token("operator", "op-1")) as http:
        backwards = await http.get(
            "/v1/technicians/tech-1/track", params={"from": base + 60, "to": base + 30}
        )
        not_a_time = await http.get("/v1/technicians/tech-1/track", params={"from": "noon"})
    assert (backwards.status_code, backwards.json()["code"]) == (422, "out_of_range")
    assert (not_a_time.status_code, not_a_time.json()["code"]) == (422, "invalid_field")


@pytest.mark.parametrize(
    ("role", "sub", "booking"),
    [("technician", "tech-1", None), ("customer", "cust-1", "b1")],
)
async def test_the_track_is_for_operators_only(hub, role, sub, booking):
    token = await hub.token(role, sub, booking)
    async with hub.client(token) as http:
        response = await http.get("/v1/technicians/tech-1/track")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


async def test_the_track_needs_credentials(hub):
    async with hub.client(None) as http:
        response = await http.get("/v1/technicians/tech-1/track")
    assert (response.status_code, response.json()["code"]) == (401, "unauthorized")


async def test_an_unknown_technician_has_an_empty_track(hub):
    feature = await track(hub, "nobody")
    assert feature["type"] == "Feature"
    assert feature["geometry"] is None
    assert feature["properties"]["count"] == 0
    assert feature["properties"]["times"] == []


async def test_a_single_fix_is_a_point(hub):
    tech, _ = await technician(hub)
    fix = location(1)
    await tech.send(json.dumps(fix))
    await acked(tech, 1)

    feature = await track(hub, "tech-1")
    assert feature["geometry"] == {"type": "Point", "coordinates": lon_lat(fix)}
    assert feature["properties"]["count"] == 1
    assert feature["properties"]["times"] == [fix["t"]]


# ------------------------------------------------------------------ the customer's socket


async def test_the_snapshot_has_the_booking_and_the_last_position(hub):
    await hub.create_booking(id="b1", technician_id="tech-1")
    assert (await hub.post("/v1/bookings/b1/en_route")).status_code == 200
    tech, _ = await technician(hub)
    t0 = time.time() - 10
    await send_fixes(tech, range(1, 3), t0)

    _, snapshot = await customer(hub, "b1")
    assert snapshot["booking"]["id"] == "b1"
    assert snapshot["booking"]["status"] == "en_route"
    assert snapshot["booking"]["technician_id"] == "tech-1"
    newest = location(2, t0 + 2)
    assert snapshot["position"] == {
        "type": "position",
        "technician_id": "tech-1",
        "seq": 2,
        "t": newest["t"],
        "lat": newest["lat"],
        "lon": newest["lon"],
        "acc": 5.0,
    }


async def test_the_snapshot_keeps_the_last_position_across_a_hub_restart(hub):
    await hub.create_booking(id="b1", technician_id="tech-1")
    assert (await hub.post("/v1/bookings/b1/en_route")).status_code == 200
    await hub.create_booking(id="b2")
    tech, _ = await technician(hub)
    await send_fixes(tech, range(1, 4))
    tech2, _ = await technician(hub, "tech-2")
    await send_fixes(tech2, range(1, 3))

    await hub.restart()  # and neither technician has reconnected yet

    _, snapshot = await customer(hub, "b1")
    assert (snapshot["position"]["technician_id"], snapshot["position"]["seq"]) == ("tech-1", 3)
    # Assigned and set off after the restart: the technician's last known position.
    assert (await hub.post("/v1/bookings/b2/assign", {"technician_id": "tech-2"})).is_success
    assert (await hub.post("/v1/bookings/b2/en_route")).is_success
    _, snapshot = await customer(hub, "b2")
    assert (snapshot["position"]["technician_id"], snapshot["position"]["seq"]) == ("tech-2", 2)


async def test_the_snapshot_has_no_position_before_the_first_fix(hub):
    await hub.create_booking(id="b1", technician_id="tech-1")
    _, snapshot = await customer(hub, "b1")
    assert snapshot["booking"]["status"] == "assigned"
    assert "position" not in snapshot


async def test_a_customer_only_sees_the_technician_of_their_booking(hub):
    await hub.create_booking(id="b1", technician_id="tech-1")
    await hub.create_booking(id="b2", technician_id="tech-2")
    for booking_id in ("b1", "b2"):
        assert (await hub.post(f"/v1/bookings/{booking_id}/en_route")).status_code == 200
    mine, _ = await customer(hub, "b1")
    theirs, _ = await customer(hub, "b2")
    tech1, _ = await technician(hub, "tech-1")
    tech2, _ = await technician(hub, "tech-2")

    await tech2.send(json.dumps(location(1)))
    assert (await receive_json(theirs))["technician_id"] == "tech-2"  # it was published
    await tech1.send(json.dumps(location(1)))
    position = await receive_json(mine)
    assert (position["type"], position["technician_id"]) == ("position", "tech-1")

    # Reassigned before setting off: the new technician's positions come, the old one's
    # (on their own visit b1) never.
    await hub.create_booking(id="b3", technician_id="tech-1")
    next_one, _ = await customer(hub, "b3")
    assert (await hub.post("/v1/bookings/b3/assign", {"technician_id": "tech-3"})).is_success
    assert (await hub.post("/v1/bookings/b3/en_route")).is_success
    for expected in ("assigned", "en_route"):
        status = await receive_json(next_one)
        assert (status["type"], status["status"]) == ("status", expected)
    tech3, _ = await technician(hub, "tech-3")
    await tech1.send(json.dumps(location(2)))
    await acked(tech1, 2)
    await tech3.send(json.dumps(location(1)))
    position = await receive_json(next_one)
    assert (position["technician_id"], position["seq"]) == ("tech-3", 1)


async def test_no_positions_before_the_booking_is_assigned(hub):
    booking = await hub.create_booking(id="b1")
    assert booking["status"] == "requested"
    watcher, snapshot = await customer(hub, "b1")
    assert snapshot["booking"]["status"] == "requested"
    tech, _ = await technician(hub)

    await send_fixes(tech, range(1, 2))  # stored and published, but to no booking

    response = await hub.post("/v1/bookings/b1/assign", {"technician_id": "tech-1"})
    assert response.status_code == 200
    assert response.json()["status"] == "assigned"
    status = await receive_json(watcher)
    assert (status["type"], status["status"]) == ("status", "assigned")
    # Assigned, not yet on the way: not shown either.
    await send_fixes(tech, range(2, 3), time.time() - 10)

    assert (await hub.post("/v1/bookings/b1/en_route")).status_code == 200
    status = await receive_json(watcher)
    assert (status["type"], status["status"]) == ("status", "en_route")
    await tech.send(json.dumps(location(3)))
    position = await receive_until(watcher, "position")  # with an ETA now it is on its way
    assert position["seq"] == 3  # 1 and 2 never reached them


async def test_cancelling_sends_the_status_then_closes_the_socket_normally(hub):
    await hub.create_booking(id="b1", technician_id="tech-1")
    tech, _ = await technician(hub)
    assert (await receive_json(tech))["booking"]["status"] == "assigned"
    assert (await hub.post("/v1/bookings/b1/en_route")).status_code == 200
    assert (await receive_json(tech))["booking"]["status"] == "en_route"
    watcher, _ = await customer(hub, "b1")
    await tech.send(json.dumps(location(1)))
    assert (await receive_json(watcher))["type"] == "position"

    response = await hub.post("/v1/bookings/b1/cancel", {"cause": "customer changed plans"})
    assert response.status_code == 200

    status = await receive_until(watcher, "status")  # after the ETA of the fix, if any
    assert (status["booking_id"], status["status"]) == ("b1", "cancelled")
    assert status["cause"] == "customer changed plans"
    await closed_with(watcher, 1000)
    # The technician learns it too.
    update = await receive_until(tech, "booking")
    assert (update["booking"]["id"], update["booking"]["status"]) == ("b1", "cancelled")


async def walk_to_completed(hub: RunningHub, booking_id: str) -> None:
    for step in ("en_route", "arrive", "start", "complete"):
        response = await hub.post(f"/v1/bookings/{booking_id}/{step}")
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("final", ["completed", "cancelled"])
async def test_a_finished_booking_gives_the_snapshot_then_a_normal_close(hub, final):
    await hub.create_booking(id="b1", technician_id="tech-1")
    tech, _ = await technician(hub)
    await send_fixes(tech, range(1, 2))  # the technician has a position: it is not shown
    if final == "completed":
        await walk_to_completed(hub, "b1")
    else:
        assert (await hub.post("/v1/bookings/b1/cancel")).status_code == 200

    watcher, snapshot = await customer(hub, "b1")
    assert snapshot["booking"]["status"] == final
    assert "position" not in snapshot
    await closed_with(watcher, 1000)
    assert watcher.close_reason == f"booking is {final}"


async def test_the_full_lifecycle_over_rest(hub):
    await hub.create_booking(id="b1")
    watcher, _ = await customer(hub, "b1")
    steps = [
        ("assign", {"technician_id": "tech-1"}, "assigned"),
        ("en_route", {"cause": "left the depot"}, "en_route"),
        ("arrive", {}, "arrived"),
        ("start", {}, "in_service"),
        ("complete", {}, "completed"),
    ]
    for path, body, status in steps:
        response = await hub.post(f"/v1/bookings/b1/{path}", body)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
        message = await receive_json(watcher)
        assert (message["type"], message["booking_id"], message["status"]) == (
            "status",
            "b1",
            status,
        )
        assert message["t"] == pytest.approx(time.time(), abs=60)
        assert message.get("cause") == body.get("cause")
    await closed_with(watcher, 1000)

    booking = await read_booking(hub, "b1")
    assert booking["status"] == "completed"
    assert booking["departed_t"] >= booking["arrived_t"]
    assert booking["service_duration_s"] == booking["departed_t"] - booking["arrived_t"]
    assert [e["event"] for e in booking["events"]] == [
        "create",
        "assign",
        "en_route",
        "check_in",
        "start_service",
        "check_out",
    ]
    assert booking["events"][2]["cause"] == "left the depot"


async def test_illegal_transitions_are_refused_with_409(hub):
    await hub.create_booking(id="b1")
    watcher, _ = await customer(hub, "b1")

    async def refused(path: str, body: dict[str, Any] | None = None) -> None:
        response = await hub.post(f"/v1/bookings/b1/{path}", body)
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "illegal_transition"

    for path in ("en_route", "arrive", "start", "complete"):
        await refused(path)
    assert (await hub.post("/v1/bookings/b1/assign", {"technician_id": "tech-1"})).is_success
    await refused("start")
    await refused("complete")
    await walk_to_completed(hub, "b1")
    await refused("cancel")
    await refused("assign", {"technician_id": "tech-2"})
    await refused("en_route")

    # Only the legal steps reached the watcher, and the booking stayed completed.
    statuses = []
    while True:
        try:
            statuses.append((await receive_json(watcher))["status"])
        except ConnectionClosedOK:
            break
    assert statuses == ["assigned", "en_route", "arrived", "in_service", "completed"]
    assert (await read_booking(hub, "b1"))["status"] == "completed"

    missing = await hub.post("/v1/bookings/nope/cancel")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


# ------------------------------------------------------------------ the technician's socket


async def test_a_technician_gets_its_bookings_on_assignment_and_on_connect(hub):
    tech, _ = await technician(hub)

    await hub.create_booking(id="b1")
    assert (await hub.post("/v1/bookings/b1/assign", {"technician_id": "tech-1"})).is_success
    message = await receive_json(tech)
    assert message["type"] == "booking"
    assert (message["booking"]["id"], message["booking"]["status"]) == ("b1", "assigned")
    assert message["booking"]["destination"] == {"lat": 52.52, "lon": 13.405}

    await hub.create_booking(id="b2", technician_id="tech-1")  # assigned at creation
    message = await receive_json(tech)
    assert (message["booking"]["id"], message["booking"]["status"]) == ("b2", "assigned")
    await hub.create_booking(id="b3", technician_id="tech-1")
    assert (await receive_json(tech))["booking"]["id"] == "b3"
    assert (await hub.post("/v1/bookings/b3/cancel")).is_success
    message = await receive_json(tech)
    assert (message["booking"]["id"], message["booking"]["status"]) == ("b3", "cancelled")
    await hub.create_booking(id="b4", technician_id="tech-1")
    assert (await receive_json(tech))["booking"]["id"] == "b4"
    # Reassigned to someone else: tech-1 is told, so its app can drop the job.
    assert (await hub.post("/v1/bookings/b4/assign", {"technician_id": "tech-2"})).is_success
    message = await receive_json(tech)
    assert (message["booking"]["id"], message["booking"]["technician_id"]) == ("b4", "tech-2")
    await tech.close()

    tech, _ = await technician(hub)
    on_connect = [await receive_json(tech), await receive_json(tech)]
    assert [(m["type"], m["booking"]["id"]) for m in on_connect] == [
        ("booking", "b1"),
        ("booking", "b2"),
    ]
    with pytest.raises(TimeoutError):
        await receive_json(tech, timeout=0.2)  # not b3 (over), not b4 (not theirs any more)
