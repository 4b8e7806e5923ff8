"""Arrival over a real hub on trips nobody here wrote: SUMO's traffic on Berlin's streets.

The committed set (``tests/data/sumo``, made by ``python -m loadtest.sumo.fixture``) holds
one trip of each kind: parked by the door, parked round the corner and walked, overshot and
came back, drove past, and twice queued behind a double-parked van by the door. Each is
streamed through the technician socket, shifted to end now, while the customer watches.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import RunningHub, receive_json, receive_until

DATA = Path(__file__).parents[1] / "data" / "sumo"
TRIPS: list[dict[str, Any]] = json.loads((DATA / "trips.json").read_text(encoding="utf-8"))


def fixes_of(trip_id: str) -> list[dict[str, Any]]:
    with gzip.open(DATA / "fixes.jsonl.gz", "rt", encoding="utf-8") as lines:
        return [fix for line in lines if (fix := json.loads(line))["trip_id"] == trip_id]


async def stream(tech: Any, fixes: list[dict[str, Any]], shift: float) -> None:
    """Send the fixes in acked batches of 50, each moved ``shift`` seconds later."""
    seq = 1
    for start in range(0, len(fixes), 50):
        points = []
        for fix in fixes[start : start + 50]:
            point = {k: v for k, v in fix.items() if k != "trip_id"}
            points.append({**point, "t": fix["t"] + shift, "seq": seq})
            seq += 1
        await tech.send(json.dumps({"type": "batch", "points": points}))
        ack = await receive_until(tech, "ack")
        while ack["seq"] < seq - 1:
            ack = await receive_until(tech, "ack")


async def drain(customer: Any) -> list[dict[str, Any]]:
    """Everything the customer was sent, until the socket goes quiet or closes."""
    messages = []
    while True:
        try:
            messages.append(await receive_json(customer, 1.0))
        except (TimeoutError, ConnectionClosed):
            return messages


def test_the_committed_set_has_one_trip_of_each_kind() -> None:
    kinds = sorted(trip["kind"] for trip in TRIPS)
    assert kinds == ["drive_past", "normal", "overshoot", "park_walk", "queue_past", "queue_past"]
    assert any("queued" in trip["tags"] for trip in TRIPS)


@pytest.mark.parametrize("trip", TRIPS, ids=[trip["kind"] for trip in TRIPS])
async def test_a_sumo_trip_through_the_hub(hub: RunningHub, trip: dict[str, Any]) -> None:
    booking_id = f"b-{trip['trip_id']}"
    tech_id = f"t-{trip['trip_id']}"
    await hub.create_booking(
        id=booking_id,
        technician_id=tech_id,
        destination=trip["destination"],
        geofence_radius_m=trip["geofence_radius_m"],
    )
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", tech_id))
    await receive_until(tech, "ack")
    customer = await hub.connect(
        f"/v1/ws/bookings/{booking_id}", await hub.token("customer", "cust-1", booking_id)
    )
    assert (await receive_json(customer))["type"] == "snapshot"
    assert (await hub.post(f"/v1/bookings/{booking_id}/en_route")).status_code == 200

    fixes = fixes_of(trip["trip_id"])
    shift = time.time() - 5 - fixes[-1]["t"]
    await stream(tech, fixes, shift)
    messages = await drain(customer)
    statuses = [m["status"] for m in messages if m["type"] == "status"]
    etas = [m for m in messages if m["type"] == "eta"]
    async with hub.client() as http:
        booking = (await http.get(f"/v1/bookings/{booking_id}")).json()

    if trip["arrived_t"] is None:
        # Drove past, or queued by the door and drove on: never checked in.
        assert "arrived" not in statuses and booking["status"] in ("en_route", "arriving")
        if "queued" in trip["tags"]:
            shown = [e["at_door"] for e in etas]
            assert True in shown  # the customer saw "at your door" while the car stood
            assert shown[-1] is False  # and no longer once it drove on
        return
    assert statuses[-3:] == ["arrived", "in_service", "completed"] or statuses[-2:] == [
        "arrived",
        "completed",
    ]
    assert booking["status"] == "completed"
    assert abs(booking["arrived_t"] - (trip["arrived_t"] + shift)) <= 60
    assert abs(booking["departed_t"] - (trip["departed_t"] + shift)) <= 30
    # Checked out before the trace ended, 75-130 s after the van pulled away.
    completed = next(e for e in booking["events"] if e["event"] == "check_out")
    assert completed["actor"] == "hub:arrivals"
    assert "driving away" in completed["cause"] or "outside" in completed["cause"]
