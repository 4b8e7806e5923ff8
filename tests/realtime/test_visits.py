"""Who sees whom, and SOS on the right visit: one technician holding two bookings.

A technician's next booking is assigned while the current visit is still on; the next
customer must not watch the technician inside the current customer's home. A customer sees
positions and the ETA only while their booking is the technician's current visit (en_route
until check-out); a technician has one current visit at a time (``technician_busy``); a
technician's SOS carries the current visit; a customer's SOS is accepted on their booking
for a grace window after it ends (``booking_closed`` after that).

Real hubs over uvicorn, real WebSocket and HTTP clients; the Redis tests run two hubs on
one real Redis (a key prefix of their own, deleted afterwards).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from realtime.auth import Principal, Role
from realtime.booking import (
    Booking,
    BookingEvent,
    BookingStatus,
    Destination,
    current_visit,
    other_open,
    other_visit,
    starts_visit,
)
from realtime.protocol import ErrorCode, ProtocolError, Sos
from tests.conftest import (
    RunningHub,
    ShiftedClock,
    receive_json,
    receive_until,
)

HOME_A = {"lat": 52.5200, "lon": 13.4050}
HOME_B = {"lat": 52.5300, "lon": 13.4300}
# 2-3 km from both homes: never inside a fence, so nothing checks in by itself.
FAR = (52.5000, 13.3700)
QUIET_S = 0.4  # how long "nothing arrives" is watched for


async def technician(hub: RunningHub, technician_id: str = "tech-1") -> ClientConnection:
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", technician_id))
    await receive_until(tech, "ack")
    return tech


async def watch(
    hub: RunningHub, booking_id: str, customer_id: str
) -> tuple[ClientConnection, dict[str, Any]]:
    """The customer's booking socket and its snapshot."""
    token = await hub.token("customer", customer_id, booking_id)
    client = await hub.connect(f"/v1/ws/bookings/{booking_id}", token)
    snapshot = await receive_json(client)
    assert snapshot["type"] == "snapshot"
    return client, snapshot


async def send_fix(tech: ClientConnection, seq: int, at: tuple[float, float] = FAR) -> None:
    """One fix, waited for until acked (so it was published before the ack came back)."""
    lat, lon = at[0] + seq * 1e-5, at[1]
    frame = {"type": "location", "seq": seq, "t": time.time(), "lat": lat, "lon": lon, "acc": 8}
    await tech.send(json.dumps(frame))
    while True:
        message = await receive_json(tech)
        assert message["type"] != "error", message
        if message["type"] == "ack" and message["seq"] >= seq:
            return


async def kinds_within(client: ClientConnection, seconds: float = QUIET_S) -> list[str]:
    """The types of the messages that arrive within ``seconds`` (the socket stays open)."""
    kinds = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            kinds.append((await receive_json(client, remaining))["type"])
        except (TimeoutError, ConnectionClosed):
            break
    return kinds


async def two_bookings(hub: RunningHub) -> None:
    """visit-a on its way, visit-b assigned next, both to tech-1."""
    await hub.create_booking(
        id="visit-a", customer_id="cust-a", technician_id="tech-1", destination=HOME_A
    )
    assert (await hub.post("/v1/bookings/visit-a/en_route")).status_code == 200
    await hub.create_booking(
        id="visit-b", customer_id="cust-b", technician_id="tech-1", destination=HOME_B
    )


async def end_visit(hub: RunningHub, booking_id: str, how: str) -> None:
    steps = ["arrive", "start", "complete"] if how == "complete" else ["cancel"]
    for step in steps:
        response = await hub.post(f"/v1/bookings/{booking_id}/{step}")
        assert response.status_code == 200, response.text


# ------------------------------------------------------------------ who sees whom


@pytest.mark.parametrize("how", ["complete", "cancel"])
async def test_only_the_current_visit_sees_the_technician_and_the_roles_swap(
    hub: RunningHub, how: str
):
    await two_bookings(hub)
    tech = await technician(hub)
    current, _ = await watch(hub, "visit-a", "cust-a")
    following, snapshot = await watch(hub, "visit-b", "cust-b")
    assert snapshot["booking"]["status"] == "assigned"

    await send_fix(tech, 1)
    # The current customer gets the position and the ETA; the next one nothing at all.
    assert (await receive_until(current, "position"))["seq"] == 1
    assert (await receive_until(current, "eta"))["seconds"] > 0
    assert await kinds_within(following) == []
    _, snapshot = await watch(hub, "visit-b", "cust-b")
    assert "position" not in snapshot and "eta" not in snapshot
    _, snapshot = await watch(hub, "visit-a", "cust-a")
    assert snapshot["position"]["seq"] == 1 and snapshot["eta"]["booking_id"] == "visit-a"

    # One visit at a time: the next one cannot start while this one is on.
    refused = await hub.post("/v1/bookings/visit-b/en_route")
    assert refused.status_code == 409
    assert refused.json()["code"] == "technician_busy"
    assert "visit-a" in refused.json()["message"]
    async with hub.client() as http:
        assert (await http.get("/v1/bookings/visit-b")).json()["status"] == "assigned"

    await end_visit(hub, "visit-a", how)
    assert (await hub.post("/v1/bookings/visit-b/en_route")).status_code == 200
    status = await receive_until(following, "status")
    assert status["status"] == "en_route"  # statuses were visible all along
    await send_fix(tech, 2)
    assert (await receive_until(following, "position"))["seq"] == 2
    assert (await receive_until(following, "eta"))["booking_id"] == "visit-b"
    # The first customer's socket closed with its final status; a new look shows nothing.
    _, snapshot = await watch(hub, "visit-a", "cust-a")
    assert snapshot["booking"]["status"] in ("completed", "cancelled")
    assert "position" not in snapshot and "eta" not in snapshot
    _, snapshot = await watch(hub, "visit-b", "cust-b")
    assert snapshot["position"]["seq"] == 2


async def test_an_assigned_booking_sees_nothing_until_en_route(hub: RunningHub):
    await hub.create_booking(id="solo", customer_id="cust-s", technician_id="tech-1")
    tech = await technician(hub)
    watcher, _ = await watch(hub, "solo", "cust-s")
    await send_fix(tech, 1)
    assert await kinds_within(watcher) == []
    assert (await hub.post("/v1/bookings/solo/en_route")).status_code == 200
    assert (await receive_json(watcher))["status"] == "en_route"
    await send_fix(tech, 2)
    assert (await receive_until(watcher, "position"))["seq"] == 2


async def test_two_technicians_each_have_their_own_visit(hub: RunningHub):
    """The rule is per technician: another technician's visit does not make one busy."""
    await hub.create_booking(id="x1", technician_id="tech-1")
    await hub.create_booking(id="x2", technician_id="tech-2")
    for booking_id in ("x1", "x2"):
        assert (await hub.post(f"/v1/bookings/{booking_id}/en_route")).status_code == 200


async def test_concurrent_en_routes_of_one_technician_start_one_visit(hub: RunningHub):
    for booking_id in ("c1", "c2", "c3"):
        await hub.create_booking(id=booking_id, technician_id="tech-1")
    answers = await asyncio.gather(
        *(hub.post(f"/v1/bookings/{b}/en_route") for b in ("c1", "c2", "c3"))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409, 409]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"technician_busy"}


# ------------------------------------------------------------------ SOS on the right visit


def sos(client_id: str, **fields: Any) -> str:
    return json.dumps({"type": "sos", "id": client_id, "t": time.time(), **fields})


async def operator(hub: RunningHub) -> ClientConnection:
    ops = await hub.connect("/v1/ws/ops", await hub.token("operator", "op-1"))
    await receive_until(ops, "snapshot")
    return ops


async def test_a_technicians_sos_carries_the_visit_in_progress(hub: RunningHub):
    # The next booking's id sorts first: the old code attached the SOS to it.
    await hub.create_booking(
        id="b-visit", customer_id="cust-now", technician_id="tech-1", destination=HOME_A
    )
    assert (await hub.post("/v1/bookings/b-visit/en_route")).status_code == 200
    await hub.create_booking(
        id="a-next", customer_id="cust-next", technician_id="tech-1", destination=HOME_B
    )
    ops = await operator(hub)
    tech = await technician(hub)
    await tech.send(sos("sos-visit-1"))
    await receive_until(tech, "sos_ack")
    incident = (await receive_until(ops, "incident"))["incident"]
    assert (incident["booking_id"], incident["customer_id"]) == ("b-visit", "cust-now")
    assert (incident["address"]["lat"], incident["address"]["lon"]) == (
        HOME_A["lat"],
        HOME_A["lon"],
    )
    # No fix yet: the location falls back to the address of the visit, not the next one.
    assert incident["location"]["source"] == "booking_address"
    assert incident["location"]["lat"] == HOME_A["lat"]


async def test_a_technician_with_only_an_assigned_booking_raises_sos_on_no_booking(
    hub: RunningHub,
):
    await hub.create_booking(id="later", customer_id="cust-later", technician_id="tech-1")
    ops = await operator(hub)
    tech = await technician(hub)
    await tech.send(sos("sos-free-1", lat=52.51, lon=13.39))
    await receive_until(tech, "sos_ack")
    incident = (await receive_until(ops, "incident"))["incident"]
    assert incident["technician_id"] == "tech-1"
    assert "booking_id" not in incident and "customer_id" not in incident
    assert "address" not in incident
    assert incident["location"]["source"] == "sos"


async def http_sos(hub: RunningHub, token: str, client_id: str) -> httpx.Response:
    async with hub.client(token) as http:
        return await http.post("/v1/sos", json={"id": client_id, "t": time.time()})


async def test_a_customers_sos_is_accepted_within_the_grace_after_the_booking_ends(
    hub_factory: Callable[..., Any],
):
    clock = ShiftedClock()
    hub = await hub_factory(clock=clock, customer_sos_grace_s=600)
    await hub.create_booking(id="done", customer_id="cust-d", technician_id="tech-1")
    # Minted before the clock moves (tokens are checked against real time).
    token = await hub.token("customer", "cust-d", "done", ttl=7200)
    watcher = await hub.connect("/v1/ws/bookings/done", token)
    assert (await receive_json(watcher))["type"] == "snapshot"
    for step in ("en_route", "arrive", "start"):
        assert (await hub.post(f"/v1/bookings/done/{step}")).status_code == 200
    # During the visit: on the booking socket.
    await watcher.send(sos("during-ws"))
    assert (await receive_until(watcher, "sos_ack"))["id"] == "during-ws"
    assert (await hub.post("/v1/bookings/done/complete")).status_code == 200
    # The socket closes with the booking: from here on the SOS goes over HTTP (as the SDK
    # and the tracking page fall back to it).
    assert (await receive_until(watcher, "status"))["status"] == "completed"

    clock.advance(590)  # the technician may still be at the door
    inside = await http_sos(hub, token, "grace-http")
    assert inside.status_code == 201, inside.text
    incident = await hub.hub.safety.get(inside.json()["incident"])
    assert (incident.booking_id, incident.technician_id) == ("done", "tech-1")

    clock.advance(20)  # 610 s after check-out: past the grace
    outside = await http_sos(hub, token, "late-http")
    assert outside.status_code == 409
    assert outside.json()["code"] == "booking_closed"
    assert "600" in outside.json()["message"]
    # The socket's path refuses with the same code (a frame that raced the close gets an
    # ``error`` frame with it: handle_sos passes a ProtocolError through as one).
    principal = Principal(sub="cust-d", role=Role.CUSTOMER, booking="done")
    with pytest.raises(ProtocolError) as refused:
        await hub.hub.safety.raise_sos(principal, Sos(id="late-ws", t=time.time()))
    assert refused.value.code == ErrorCode.BOOKING_CLOSED
    # A retry of an SOS stored within the grace still gets its incident back.
    retried = await http_sos(hub, token, "grace-http")
    assert retried.status_code == 200
    assert retried.json()["incident"] == inside.json()["incident"]


async def test_a_cancelled_booking_uses_the_same_grace(hub_factory: Callable[..., Any]):
    clock = ShiftedClock()
    hub = await hub_factory(clock=clock)  # the default grace: 1800 s
    await hub.create_booking(id="gone", customer_id="cust-g", technician_id="tech-1")
    token = await hub.token("customer", "cust-g", "gone", ttl=7200)
    assert (await hub.post("/v1/bookings/gone/cancel")).status_code == 200
    clock.advance(1790)
    inside = await http_sos(hub, token, "g-1")
    clock.advance(20)
    outside = await http_sos(hub, token, "g-2")
    assert inside.status_code == 201
    assert (outside.status_code, outside.json()["code"]) == (409, "booking_closed")


# ------------------------------------------------------------------ across hubs (Redis)


async def test_one_visit_at_a_time_holds_across_hubs(redis_pair: list[RunningHub]):
    first, second = redis_pair
    await first.create_booking(id="r-a", customer_id="cust-a", technician_id="tech-r")
    await second.create_booking(id="r-b", customer_id="cust-b", technician_id="tech-r")
    answers = await asyncio.gather(
        first.post("/v1/bookings/r-a/en_route"), second.post("/v1/bookings/r-b/en_route")
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    loser = next(a for a in answers if a.status_code == 409)
    assert loser.json()["code"] == "technician_busy"
    winner = "r-a" if answers[0].status_code == 200 else "r-b"
    other = "r-b" if winner == "r-a" else "r-a"

    # Positions go to the winner's customer only, whichever hub the customer watches from.
    tech = await technician(first, "tech-r")
    customers = {"r-a": "cust-a", "r-b": "cust-b"}
    winner_socket, _ = await watch(second, winner, customers[winner])
    other_socket, _ = await watch(second, other, customers[other])
    await send_fix(tech, 1)
    assert (await receive_until(winner_socket, "position"))["seq"] == 1
    assert "position" not in await kinds_within(other_socket)


# ------------------------------------------------------------------ the pure rules


def _booking(
    booking_id: str, status: str, updated_t: float = 0.0, technician: str = "t"
) -> Booking:
    return Booking(
        id=booking_id,
        customer_id="c",
        destination=Destination(0.0, 0.0),
        status=BookingStatus(status),
        created_t=0.0,
        updated_t=updated_t,
        technician_id=technician,
    )


def test_only_en_route_starts_a_visit():
    assert starts_visit(_booking("a", "assigned"), BookingEvent.EN_ROUTE)
    assert not starts_visit(_booking("a", "en_route"), BookingEvent.APPROACH)  # already on
    assert not starts_visit(_booking("a", "requested"), BookingEvent.ASSIGN)
    assert not starts_visit(_booking("a", "requested"), BookingEvent.EN_ROUTE)  # illegal


def test_the_current_visit_is_the_one_furthest_along_then_the_oldest():
    """Stored data from before the rule may hold two visits: every hub picks the same."""
    assigned = _booking("a", "assigned")
    on_way = _booking("b", "en_route", updated_t=5)
    inside = _booking("c", "arrived", updated_t=9)
    done = _booking("d", "completed")
    assert current_visit([assigned, done]) is None
    assert current_visit([assigned, on_way, inside]) is inside
    assert current_visit([_booking("x", "en_route", 7), on_way]) is on_way
    assert other_visit([on_way, assigned], "t", "b") is None
    assert other_visit([on_way, assigned], "t", "a") is on_way
    assert other_visit([on_way], "someone-else", "a") is None
    assert other_open([assigned, on_way, done], "t", "a") == [on_way]


async def test_a_customers_token_is_not_refreshed_past_the_grace(hub_factory: Callable[..., Any]):
    """The tracking page refreshes its token before expiry; once the booking is over and the
    grace has passed, an old link is not kept alive (403 booking_closed)."""
    clock = ShiftedClock()
    hub = await hub_factory(clock=clock, customer_sos_grace_s=600)
    await hub.create_booking(id="old-link", customer_id="cust-o", technician_id="tech-1")
    token = await hub.token("customer", "cust-o", "old-link", ttl=7200)

    async def refresh() -> Any:
        async with hub.client(token) as http:
            return await http.post("/v1/tokens/refresh")

    assert (await refresh()).status_code == 201  # open booking
    assert (await hub.post("/v1/bookings/old-link/cancel")).status_code == 200
    clock.advance(590)
    assert (await refresh()).status_code == 201  # within the grace
    clock.advance(20)
    late = await refresh()
    assert late.status_code == 403
    assert late.json()["code"] == "booking_closed"
