"""GET /v1/stats over a real hub (issue 16 item 2): a known sequence of visits and SOS, and
the figures read back exactly from what the hub stored."""

from __future__ import annotations

import json
import time

import pytest

from realtime.booking import BookingEvent
from tests.conftest import RunningHub, ShiftedClock, receive_until


async def put(hub: RunningHub, path: str, body: dict) -> None:
    async with hub.client() as http:
        response = await http.put(path, json=body)
    assert response.status_code == 200, response.text


async def visit(hub: RunningHub, booking_id: str, technician_id: str, **body) -> None:
    """Booked, set off, checked in by hand (the platform), started and completed."""
    await hub.create_booking(id=booking_id, technician_id=technician_id, city="north", **body)
    for step in ("en_route", "arrive", "start", "complete"):
        assert (await hub.post(f"/v1/bookings/{booking_id}/{step}")).status_code == 200


async def raise_sos(hub: RunningHub, technician_id: str, client_id: str) -> str:
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", technician_id))
    await receive_until(tech, "ack")
    await tech.send(json.dumps({"type": "sos", "id": client_id, "t": time.time()}))
    return (await receive_until(tech, "sos_ack"))["incident"]


async def stats(hub: RunningHub, token: str | None = None, **params) -> dict:
    async with hub.client(token) if token else hub.client() as http:
        response = await http.get("/v1/stats", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_figures_of_a_known_day(hub_factory):
    clock = ShiftedClock()
    hub = await hub_factory(clock=clock)
    await put(hub, "/v1/cities/north", {"name": "North", "timezone": "Europe/Berlin"})
    await put(
        hub,
        "/v1/cities/south",
        {"name": "South", "timezone": "Europe/Rome", "operator_group": "team-south"},
    )
    await put(hub, "/v1/technicians/t-sos", {"city": "north"})
    # A zone round the bookings' default address (52.52, 13.405); another far away.
    square = [[[13.40, 52.515], [13.41, 52.515], [13.41, 52.525], [13.40, 52.525], [13.40, 52.515]]]
    await put(hub, "/v1/zones/centre", {"type": "Polygon", "coordinates": square})
    far = [[[13.0, 52.0], [13.01, 52.0], [13.01, 52.01], [13.0, 52.01], [13.0, 52.0]]]
    await put(hub, "/v1/zones/far", {"type": "Polygon", "coordinates": far})
    operator = await hub.token("operator", "op-1")
    # Minted before the hub's clock moves (tokens are checked against real time).
    async with hub.client() as http:
        minted = await http.post(
            "/v1/tokens", json={"role": "operator", "sub": "op-x", "group": "team-x"}
        )
    started = clock()
    now = clock()
    # On time (checked in within its window), late (after it), checked in by the hub.
    await visit(hub, "on-time", "t-1", window={"start_t": now - 600, "end_t": now + 3600})
    await visit(hub, "late", "t-2", window={"start_t": now - 7200, "end_t": now - 3600})
    await hub.create_booking(id="auto", technician_id="t-3", city="north")
    assert (await hub.post("/v1/bookings/auto/en_route")).status_code == 200
    desk = hub.hub.bookings
    await desk.transition("auto", BookingEvent.CHECK_IN, "hub:arrivals", cause="test")
    # What the arrival service keeps after scoring the shown ETAs (test_dashboard_metrics).
    await desk.annotate("auto", eta_scored=4, eta_mae_s=30.0, eta_range_held=0.75)
    await hub.create_booking(id="dropped", city="north")
    assert (await hub.post("/v1/bookings/dropped/cancel")).status_code == 200
    await hub.create_booking(id="southern", city="south")
    # Two SOS in the north: one acknowledged after 7 s, one never.
    await raise_sos(hub, "t-sos", "sos-waiting")
    answered = await raise_sos(hub, "t-sos", "sos-answered")
    clock.advance(7.0)
    async with hub.client(operator) as http:
        ack = await http.post(f"/v1/incidents/{answered}/ack", json={})
    assert ack.status_code == 200, ack.text
    period = {"from": started - 1, "to": clock() + 1}

    north = await stats(hub, city="north", **period)

    assert north["city"] == "north" and north["bookings"] == 4
    assert north["bookings_by_status"] == {"arrived": 1, "cancelled": 1, "completed": 2}
    assert north["visits"] == {
        "checked_in": 3,
        "automatic": 1,
        "manual": 2,
        "automatic_share": 0.3333,
        "on_time_counted": 2,
        "on_time_rate": 0.5,
    }
    assert north["eta"] == {"arrivals": 1, "scored": 4, "mae_s": 30.0, "range_held": 0.75}
    sos = north["incidents"]
    assert (sos["raised"], sos["acknowledged"], sos["open"]) == (2, 1, 2)
    assert sos["by_kind"] == {"sos": 2}
    # 7 s on the hub's clock, plus the real time the ack request took (a loaded machine).
    assert sos["ack_p50_s"] == pytest.approx(7.0, abs=0.5)
    assert sos["ack_p90_s"] == pytest.approx(7.0, abs=0.5)
    # Of the two raised, one was answered within 15 s (and 20 s): half, short of 90 / 95 %.
    assert [(t["within_s"], t["share"], t["met"]) for t in sos["targets"]] == [
        (15.0, 0.5, False),
        (20.0, 0.5, False),
    ]

    everything = await stats(hub, **period)
    assert everything["bookings"] == 5 and set(everything["by_city"]) == {"north", "south"}
    assert everything["by_city"]["south"]["bookings"] == 1
    # Per zone: every booking is at the default address, in "centre"; the SOS were raised
    # between visits with no position, so they have no place and no zone. "far" is empty.
    assert set(everything["by_zone"]) == {"centre"}
    assert everything["by_zone"]["centre"]["bookings"] == 5
    assert everything["by_zone"]["centre"]["incidents"]["raised"] == 0
    # An operator of another group sees the cities without one, not team-south's.
    grouped = await stats(hub, minted.json()["token"], **period)
    assert set(grouped["by_city"]) == {"north"} and grouped["bookings"] == 4
    # A period before any of it: zeros and nulls, not errors.
    empty = await stats(hub, city="north", **{"from": started - 100, "to": started - 50})
    assert empty["bookings"] == 0 and empty["visits"]["on_time_rate"] is None
    assert empty["incidents"]["ack_p50_s"] is None


async def test_bad_periods_and_cities_are_refused(hub: RunningHub):
    async with hub.client() as http:
        for params, code in (
            ({"from": 10, "to": 5}, "out_of_range"),
            ({"from": 0, "to": 100 * 86400}, "out_of_range"),
            ({"from": "yesterday"}, "invalid_field"),
            ({"city": "atlantis"}, "unknown_city"),
        ):
            response = await http.get("/v1/stats", params=params)
            assert (response.status_code, response.json()["code"]) == (422, code), params
