"""Safety alerts beyond SOS over a real hub: overdue visits, lost signal, zones, their acks.

Timers are short (fractions of a second) and the one long wait, a visit's expected
duration (at least 60 s through the API), is jumped over by moving the hub's clock.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from geofence.geo import destination_point
from tests.conftest import RunningHub, ShiftedClock, receive_json, receive_until
from tests.realtime.test_arrival_e2e import HOME, send_track

FAST = {"watchdog_interval_s": 0.05}
OVERDUE = {**FAST, "overdue_margin_s": 0, "check_timeout_s": 0.3}


async def start_visit(hub: RunningHub, booking_id: str, technician_id: str, **body: Any) -> None:
    """A booking in service since now (arrived_t is the hub's clock at /arrive)."""
    await hub.create_booking(id=booking_id, technician_id=technician_id, **body)
    for step in ("en_route", "arrive", "start"):
        response = await hub.post(f"/v1/bookings/{booking_id}/{step}")
        assert response.status_code == 200, response.text


async def operator(hub: RunningHub, token: str):
    console = await hub.connect("/v1/ws/ops", token)
    snapshot = await receive_json(console)
    assert snapshot["type"] == "snapshot"
    return console, snapshot


async def technician(hub: RunningHub, token: str):
    tech = await hub.connect("/v1/ws/technician", token)
    await receive_until(tech, "ack")
    return tech


async def send_fix(tech, seq: int) -> None:
    fix = {"type": "location", "seq": seq, "t": time.time(), "lat": HOME[0], "lon": HOME[1]}
    await tech.send(json.dumps(fix))
    while (await receive_until(tech, "ack"))["seq"] < seq:
        pass


def square(center: tuple[float, float], half_m: float) -> dict[str, Any]:
    """A GeoJSON square polygon around ``center``."""
    corners = [
        list(reversed(destination_point(*center, bearing, half_m * 2**0.5)))
        for bearing in (45.0, 135.0, 225.0, 315.0)
    ]
    return {"type": "Polygon", "coordinates": [[*corners, corners[0]]]}


async def nothing(client, kind: str, timeout: float) -> None:
    """No message of this type arrives within ``timeout``."""
    with pytest.raises(TimeoutError):
        await receive_until(client, kind, timeout=timeout)


async def get_alert(hub: RunningHub, token: str, alert_id: str) -> dict[str, Any]:
    async with hub.client(token) as http:
        response = await http.get(f"/v1/alerts/{alert_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def overdue_hub(hub_factory, **settings: Any):
    """A hub whose clock the test moves, a 60 s visit of tech-1, tokens minted up front."""
    clock = ShiftedClock()
    hub = await hub_factory(clock=clock, **{**OVERDUE, **settings})
    tokens = {
        "tech": await hub.token("technician", "tech-1"),
        "op-1": await hub.token("operator", "op-1"),
        "op-2": await hub.token("operator", "op-2"),
    }
    await start_visit(hub, "b-late", "tech-1", expected_duration_s=60)
    return hub, clock, tokens


# ------------------------------------------------------------------ overdue visits


async def test_an_overdue_visit_asks_are_you_ok_and_an_answer_prevents_the_incident(
    hub_factory,
):
    hub, clock, tokens = await overdue_hub(hub_factory, recheck_after_ok_s=30)
    ops, _ = await operator(hub, tokens["op-1"])
    tech = await technician(hub, tokens["tech"])
    await nothing(tech, "check", timeout=0.2)  # not overdue yet

    clock.advance(61)  # past the expected 60 s (margin 0)
    check = await receive_until(tech, "check", timeout=2)
    assert check["id"] == "b-late:check:1" and check["booking_id"] == "b-late"
    assert check["question"] == "Are you OK?"
    assert check["answer_by"] == pytest.approx(check["t"] + 0.3)
    await tech.send(json.dumps({"type": "check_ok", "id": check["id"]}))
    assert (await receive_until(tech, "check_ack"))["id"] == check["id"]

    await nothing(ops, "incident", timeout=0.6)  # well past answer_by: no incident
    assert hub.hub.safety.open_incidents() == [] and hub.hub.alerts.open_alerts() == []
    await nothing(tech, "check", timeout=0.1)  # and no new question right away

    clock.advance(30)  # recheck_after_ok_s later the visit is still overdue: ask again
    assert (await receive_until(tech, "check", timeout=2))["id"] == "b-late:check:2"


async def test_an_unanswered_check_raises_an_overdue_visit_incident_and_alert_once(
    hub_factory,
):
    hub, clock, tokens = await overdue_hub(hub_factory)
    ops, _ = await operator(hub, tokens["op-1"])
    tech = await technician(hub, tokens["tech"])
    clock.advance(61)
    check = await receive_until(tech, "check", timeout=2)

    raised = await receive_until(ops, "incident", timeout=3)
    incident = raised["incident"]
    assert incident["kind"] == "overdue_visit" and incident["status"] == "open"
    assert incident["reporter"] == {"sub": "tech-1", "role": "system"}
    assert incident["client_id"] == check["id"]
    assert incident["booking_id"] == "b-late" and incident["technician_id"] == "tech-1"
    assert incident["customer_id"] == "cust-1"
    assert incident["location"]["source"] == "booking_address"  # no fix yet: the address
    alert = await receive_until(ops, "alert", timeout=2)
    assert alert["kind"] == "visit_overdue" and alert["status"] == "open"
    assert alert["id"] and alert["incident_id"] == incident["id"]
    assert alert["booking_id"] == "b-late" and alert["technician_id"] == "tech-1"

    # Once: no second incident or alert, not even across a restart.
    await nothing(ops, "alert", timeout=0.3)
    await hub.restart()
    ops, snapshot = await operator(hub, tokens["op-2"])
    assert [i["id"] for i in snapshot["incidents"]] == [incident["id"]]
    assert [a["id"] for a in snapshot["alerts"]] == [alert["id"]]
    await nothing(ops, "alert", timeout=0.3)
    assert [i.id for i in hub.hub.safety.open_incidents()] == [incident["id"]]

    # The question is asked again on reconnect, and a late "ok" is still taken.
    tech = await technician(hub, tokens["tech"])
    assert (await receive_until(tech, "check"))["id"] == check["id"]
    await tech.send(json.dumps({"type": "check_ok", "id": check["id"]}))
    assert (await receive_until(tech, "check_ack"))["id"] == check["id"]
    assert hub.hub.safety.open_incidents()[0].status == "open"  # an operator closes it


async def test_a_check_ok_for_a_check_never_asked_is_refused(hub: RunningHub):
    tech = await technician(hub, await hub.token("technician", "tech-1"))
    await tech.send(json.dumps({"type": "check_ok", "id": "b-x:check:1"}))
    assert (await receive_until(tech, "error"))["code"] == "not_found"
    await tech.send(json.dumps({"type": "check_ok"}))
    assert (await receive_until(tech, "error"))["code"] == "invalid_field"


# ------------------------------------------------------------------ signal lost


async def test_signal_lost_during_a_visit_alerts_once_per_silence(hub_factory):
    hub = await hub_factory(signal_lost_s=0.3, **FAST)
    ops, _ = await operator(hub, await hub.token("operator", "op-1"))
    tech = await technician(hub, await hub.token("technician", "tech-s"))
    await start_visit(hub, "b-quiet", "tech-s")
    await send_fix(tech, 1)

    first = await receive_until(ops, "alert", timeout=3)
    assert first["kind"] == "signal_lost" and first["status"] == "open"
    assert first["booking_id"] == "b-quiet" and first["technician_id"] == "tech-s"
    assert first["id"]
    await nothing(ops, "alert", timeout=0.6)  # the silence goes on: still one alert

    await send_fix(tech, 2)  # the signal is back: re-armed
    second = await receive_until(ops, "alert", timeout=3)
    assert second["kind"] == "signal_lost" and second["id"] != first["id"]


# ------------------------------------------------------------------ zones


async def test_leaving_the_service_area_during_a_visit_is_a_stored_alert_with_an_id(
    hub: RunningHub,
):
    area = {"type": "Feature", "properties": {"kind": "service_area"}}
    area["geometry"] = square(HOME, 1000.0)
    async with hub.client() as http:
        assert (await http.put("/v1/zones/mitte", json=area)).status_code == 200
    op_token = await hub.token("operator", "op-1")
    ops, _ = await operator(hub, op_token)
    tech = await technician(hub, await hub.token("technician", "tech-z"))
    await start_visit(hub, "visit-z", "tech-z")
    now = time.time()
    inside = destination_point(*HOME, 90.0, 200.0)
    outside = destination_point(*HOME, 90.0, 3000.0)
    await send_track(tech, [(now - 20, *inside), (now - 10, *outside)], 1)

    alert = await receive_until(ops, "alert")
    assert alert["kind"] == "left_service_area" and alert["status"] == "open"
    assert alert["id"] and alert["zone_id"].startswith("mitte")
    assert alert["booking_id"] == "visit-z" and alert["zone_kind"] == "service_area"
    async with hub.client(op_token) as http:
        listed = (await http.get("/v1/alerts")).json()["alerts"]
    assert [a["id"] for a in listed] == [alert["id"]]
    stored = await get_alert(hub, op_token, alert["id"])
    assert [(a["action"], a["actor"]) for a in stored["audit"]] == [("raise", "system:zoning")]


# ------------------------------------------------------------------ acknowledging


async def two_silent_visits(hub: RunningHub, ops) -> list[dict[str, Any]]:
    """Two technicians in a visit who never send a fix: one signal_lost alert each."""
    for booking_id, technician_id in (("b-1", "tech-1"), ("b-2", "tech-2")):
        await start_visit(hub, booking_id, technician_id)
    alerts = [await receive_until(ops, "alert", timeout=3) for _ in range(2)]
    return sorted(alerts, key=lambda a: a["booking_id"])


async def test_operators_ack_alerts_over_the_socket_and_over_rest(hub_factory):
    hub = await hub_factory(signal_lost_s=0.2, **FAST)
    first_token = await hub.token("operator", "op-1")
    second_token = await hub.token("operator", "op-2")
    ops, _ = await operator(hub, first_token)
    other, _ = await operator(hub, second_token)
    by_socket, by_rest = await two_silent_visits(hub, ops)

    await ops.send(json.dumps({"type": "ack_alert", "alert": by_socket["id"], "note": "on it"}))
    for console in (ops, other):  # every console learns it is taken, with who and when
        acked = await receive_until(console, "alert")
        while acked["id"] != by_socket["id"] or acked["status"] != "acknowledged":
            acked = await receive_until(console, "alert")
        assert acked["acked_by"] == "operator:op-1" and acked["note"] == "on it"
        assert acked["acked_t"] >= by_socket["t"]
    await ops.send(json.dumps({"type": "ack_alert", "alert": by_socket["id"]}))
    assert (await receive_until(ops, "error"))["code"] == "illegal_transition"
    await ops.send(json.dumps({"type": "ack_alert", "alert": "alert-nope"}))
    assert (await receive_until(ops, "error"))["code"] == "not_found"

    async with hub.client(second_token) as http:
        response = await http.post(f"/v1/alerts/{by_rest['id']}/ack", json={"note": "called"})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "acknowledged"
        assert response.json()["acked_by"] == "operator:op-2"
        again = await http.post(f"/v1/alerts/{by_rest['id']}/ack", json={})
        assert again.status_code == 409 and again.json()["code"] == "illegal_transition"
        assert (await http.post("/v1/alerts/alert-nope/ack", json={})).status_code == 404
        assert (await http.get("/v1/alerts")).json()["alerts"] == []

    trail = (await get_alert(hub, second_token, by_socket["id"]))["audit"]
    assert [(a["action"], a["actor"], a.get("note")) for a in trail][-1] == (
        "ack",
        "operator:op-1",
        "on it",
    )
    trail = (await get_alert(hub, second_token, by_rest["id"]))["audit"]
    assert [(a["action"], a["actor"]) for a in trail] == [
        ("raise", "system:watchdog"),
        ("ack", "operator:op-2"),
    ]
    _, snapshot = await operator(hub, await hub.token("operator", "op-3"))
    assert snapshot["alerts"] == []


async def test_open_alerts_survive_a_restart_and_are_not_raised_again(hub_factory):
    hub = await hub_factory(signal_lost_s=0.2, **FAST)
    ops, _ = await operator(hub, await hub.token("operator", "op-1"))
    open_one, acked_one = await two_silent_visits(hub, ops)
    async with hub.client(await hub.token("operator", "op-1")) as http:
        assert (await http.post(f"/v1/alerts/{acked_one['id']}/ack")).status_code == 200

    await hub.restart()
    token = await hub.token("operator", "op-2")
    ops, snapshot = await operator(hub, token)
    assert [(a["id"], a["status"]) for a in snapshot["alerts"]] == [(open_one["id"], "open")]
    await nothing(ops, "alert", timeout=0.5)  # the same silences: no new alerts
    async with hub.client(token) as http:
        response = await http.post(f"/v1/alerts/{open_one['id']}/ack")
        assert response.status_code == 200 and response.json()["acked_by"] == "operator:op-2"


async def test_technicians_and_customers_cannot_ack_alerts(hub: RunningHub):
    await hub.create_booking(id="b-c", technician_id="tech-1")
    for role, sub, booking in (("technician", "tech-1", None), ("customer", "cust-1", "b-c")):
        async with hub.client(await hub.token(role, sub, booking)) as http:
            assert (await http.post("/v1/alerts/alert-x/ack", json={})).status_code == 403
            assert (await http.get("/v1/alerts")).status_code == 403
            assert (await http.get("/v1/alerts/alert-x")).status_code == 403
    tech = await technician(hub, await hub.token("technician", "tech-1"))
    customer_token = await hub.token("customer", "cust-1", "b-c")
    customer = await hub.connect("/v1/ws/bookings/b-c", customer_token)
    assert (await receive_json(customer))["type"] == "snapshot"
    for client in (tech, customer):
        await client.send(json.dumps({"type": "ack_alert", "alert": "alert-x"}))
        assert (await receive_until(client, "error"))["code"] == "unknown_type"
