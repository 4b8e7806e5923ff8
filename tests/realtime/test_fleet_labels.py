"""The console's fleet entries carry each technician's display name and status (issue 16).

``status`` is ``idle`` (online, no current visit), the current visit's status (``en_route``,
``arriving``, ``arrived``, ``in_service``) or ``offline``; ``name`` is the platform's display
name when the profile has one. Both come from the hub's in-memory mirrors, and a booking
that changes its technician's status sends their entry again without waiting for a fix.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection

from realtime.booking import Booking, BookingStatus, Destination
from realtime.fleet import IDLE, OFFLINE, technician_status
from tests.conftest import RunningHub, receive_json, receive_until

VISIT_STATUSES = [
    BookingStatus.EN_ROUTE,
    BookingStatus.ARRIVING,
    BookingStatus.ARRIVED,
    BookingStatus.IN_SERVICE,
]


def booking(status: BookingStatus) -> Booking:
    return Booking(
        id="b-1",
        customer_id="cust-1",
        destination=Destination(52.52, 13.405),
        status=status,
        created_t=1000.0,
        updated_t=1000.0,
        technician_id="t-1",
    )


# ------------------------------------------------------------------ the pure rule


def test_online_without_a_visit_is_idle():
    assert technician_status(True, None) == "idle" == IDLE


@pytest.mark.parametrize("status", VISIT_STATUSES)
def test_online_in_a_visit_shows_the_visits_status(status):
    assert technician_status(True, booking(status)) == status.value


def test_offline_wins_over_a_visit():
    # The phone is silent: the console must not say "en route" for someone it cannot see.
    assert technician_status(False, booking(BookingStatus.EN_ROUTE)) == "offline" == OFFLINE
    assert technician_status(False, None) == "offline"


@given(st.booleans(), st.none() | st.sampled_from(VISIT_STATUSES))
def test_the_status_is_always_one_of_the_six_documented_words(online, visit_status):
    visit = booking(visit_status) if visit_status is not None else None
    status = technician_status(online, visit)
    assert status in {"idle", "en_route", "arriving", "arrived", "in_service", "offline"}
    assert (status == "offline") == (not online)


# ------------------------------------------------------------------ over the real ops socket


async def put_name(hub: RunningHub, technician_id: str, name: str) -> None:
    async with hub.client() as http:
        response = await http.put(f"/v1/technicians/{technician_id}", json={"name": name})
    assert response.status_code == 200, response.text


async def technician(hub: RunningHub, technician_id: str) -> ClientConnection:
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", technician_id))
    await receive_until(tech, "ack")
    return tech


async def entry_of(console: ClientConnection, technician_id: str, **wanted: Any) -> dict:
    """The first fleet entry of the technician that has ``wanted``'s values."""
    while True:
        message = await receive_until(console, "fleet")
        for entry in message["positions"]:
            if entry["technician_id"] == technician_id and all(
                entry.get(k) == v for k, v in wanted.items()
            ):
                return entry


async def test_fleet_entries_carry_the_name_and_the_visit_status(hub):
    await put_name(hub, "t-1", "Ada Lovelace")
    tech = await technician(hub, "t-1")
    fix = {"type": "location", "seq": 1, "t": time.time() - 1, "lat": 52.5, "lon": 13.4}
    await tech.send(json.dumps(fix))
    while (await receive_until(tech, "ack"))["seq"] < 1:
        pass
    other = await technician(hub, "t-2")  # no profile: no name

    console = await hub.connect("/v1/ws/ops", await hub.token("operator", "op-1"))
    snapshot = await receive_json(console)
    assert snapshot["type"] == "snapshot"
    position = {"t": fix["t"], "lat": 52.5, "lon": 13.4}
    ada = {"technician_id": "t-1", "online": True, **position, "name": "Ada Lovelace"}
    assert snapshot["fleet"] == [
        {**ada, "status": "idle"},
        {"technician_id": "t-2", "online": True, "status": "idle"},
    ]

    # Assigned is not a visit yet; en_route is, and the console hears it with no new fix.
    await hub.create_booking(id="b-1", technician_id="t-1")
    assert (await hub.post("/v1/bookings/b-1/en_route")).status_code == 200
    assert await entry_of(console, "t-1", status="en_route") == {**ada, "status": "en_route"}
    assert (await hub.post("/v1/bookings/b-1/arrive")).status_code == 200
    assert await entry_of(console, "t-1", status="arrived") == {**ada, "status": "arrived"}
    assert (await hub.post("/v1/bookings/b-1/start")).status_code == 200
    assert await entry_of(console, "t-1", status="in_service") == {**ada, "status": "in_service"}
    # The visit ends: idle again.
    assert (await hub.post("/v1/bookings/b-1/complete")).status_code == 200
    assert await entry_of(console, "t-1", status="idle") == {**ada, "status": "idle"}

    # The socket closes during a visit: offline wins, the name stays for the list.
    await hub.create_booking(id="b-2", technician_id="t-1")
    assert (await hub.post("/v1/bookings/b-2/en_route")).status_code == 200
    await entry_of(console, "t-1", status="en_route")
    await tech.close()
    offline = await entry_of(console, "t-1", online=False)
    assert offline == {**ada, "online": False, "status": "offline"}
    await other.close()
    assert await entry_of(console, "t-2", online=False) == {
        "technician_id": "t-2",
        "online": False,
        "status": "offline",
    }


async def test_a_console_opened_during_a_visit_sees_it_in_the_snapshot(hub):
    tech = await technician(hub, "t-1")
    await hub.create_booking(id="b-1", technician_id="t-1")
    assert (await hub.post("/v1/bookings/b-1/en_route")).status_code == 200

    console = await hub.connect("/v1/ws/ops", await hub.token("operator", "op-1"))
    snapshot = await receive_json(console)
    # No customer data in the entry: no booking id, no customer, no destination.
    assert snapshot["fleet"] == [{"technician_id": "t-1", "online": True, "status": "en_route"}]
    await tech.close()
