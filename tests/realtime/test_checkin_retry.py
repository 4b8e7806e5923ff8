"""A store failure at approach, check-in or check-out delays the status, never loses it.

The arrival tracker's decisions stay pending until their booking transition is stored:
retried with backoff in the background, and at once on the technician's next fix. Over a
real hub whose real store fails ``save_booking`` a few times for chosen statuses (the only
thing injected), the booking still goes arriving -> arrived -> completed, with the real
crossing times (the pure presence detector fed the same fixes is the oracle), and the
customer stops getting positions after the check-out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from geofence.fences import CircleFence
from geofence.geo import bearing_deg, destination_point, distance_m
from geofence.model import Fix
from geofence.presence import PresenceDetector
from realtime import arrivals
from realtime.booking import DEFAULT_GEOFENCE_RADIUS_M
from tests.conftest import RunningHub, receive_json, receive_until

HOME = (52.5200, 13.4050)
INDOOR_ACC = 30.0
Point = tuple[float, ...]  # t, lat, lon and, indoors, the accuracy


class FlakySaves:
    """The hub's real ``save_booking``, failing the first N writes of chosen statuses."""

    def __init__(self, real: Any, failures: dict[str, int]) -> None:
        self.real = real
        self.left = Counter(failures)
        self.failed: Counter[str] = Counter()
        self.blocked: set[str] = set()  # statuses that fail until unblocked

    async def __call__(self, booking: Any, events: Any) -> None:
        status = booking.status.value
        if status in self.blocked or self.left[status] > 0:
            self.left[status] -= 1
            self.failed[status] += 1
            raise OSError(f"injected: disk I/O error writing {status}")
        await self.real(booking, events)


def drive(start: tuple[float, float], end: tuple[float, float], t0: float, speed: float):
    total = distance_m(*start, *end)
    bearing = bearing_deg(*start, *end)
    steps = max(1, int(total / speed))
    return [
        (t0 + i, *destination_point(*start, bearing, total * i / steps)) for i in range(steps + 1)
    ]


def stay(at: tuple[float, float], t0: float, seconds: int, step: int = 5) -> list[Point]:
    """Parked and gone indoors: the phone reports 30 m accuracy (check-in wants the move
    indoors; without it the hub waits 330 s, as for a car queued by the door)."""
    return [(t0 + i, *at, INDOOR_ACC) for i in range(0, seconds, step)]


def a_visit(t0: float) -> tuple[list[Point], list[Point], list[Point]]:
    """Drive in from 2.5 km, stay 10 minutes, drive 3 km away: 1 Hz fixes."""
    start = destination_point(*HOME, 200.0, 2500.0)
    parked = destination_point(*HOME, 20.0, 10.0)
    approach = drive(start, parked, t0, speed=10.0)
    visit = stay(parked, approach[-1][0] + 5, 600)
    away = drive(parked, destination_point(*HOME, 90.0, 3000.0), visit[-1][0] + 5, speed=8.0)
    return approach, visit, away


def oracle(points: list[Point], acc: float) -> dict[str, float]:
    """When the pure detector says the technician crossed in and out (the real times)."""
    detector = PresenceDetector(CircleFence(*HOME, DEFAULT_GEOFENCE_RADIUS_M))
    crossings = {}
    for t, lat, lon, *own in points:
        for event in detector.update(Fix(t=t, lat=lat, lon=lon, acc=own[0] if own else acc)):
            crossings.setdefault(event.kind, event.t)
    return crossings


async def send_batches(tech: ClientConnection, points: list[Point], seq: int, acc: float) -> int:
    """Send points as batches of 50, each acked before the next; returns the next seq."""
    for start in range(0, len(points), 50):
        chunk = []
        for t, lat, lon, *own in points[start : start + 50]:
            fix_acc = own[0] if own else acc
            chunk.append({"seq": seq, "t": t, "lat": lat, "lon": lon, "acc": fix_acc})
            seq += 1
        await tech.send(json.dumps({"type": "batch", "points": chunk}))
        while True:
            message = await receive_json(tech)
            assert message["type"] != "error", message
            if message["type"] == "ack" and message["seq"] >= seq - 1:
                break
    return seq


async def statuses_until(client: ClientConnection, final: str, timeout: float = 15.0) -> list:
    """Every message up to the status ``final``."""
    messages = []
    while True:
        message = await receive_json(client, timeout)
        messages.append(message)
        if message["type"] == "status" and message["status"] == final:
            return messages


async def booking(hub: RunningHub, booking_id: str) -> dict[str, Any]:
    async with hub.client() as http:
        return (await http.get(f"/v1/bookings/{booking_id}")).json()


async def start_visit(hub: RunningHub) -> tuple[ClientConnection, ClientConnection]:
    await hub.create_booking(
        id="visit-1", technician_id="tech-a", destination={"lat": HOME[0], "lon": HOME[1]}
    )
    assert (await hub.post("/v1/bookings/visit-1/en_route")).status_code == 200
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "tech-a"))
    await receive_until(tech, "ack")
    customer = await hub.connect(
        "/v1/ws/bookings/visit-1", await hub.token("customer", "cust-1", "visit-1")
    )
    assert (await receive_json(customer))["type"] == "snapshot"
    return tech, customer


async def test_failed_writes_at_approach_check_in_and_check_out_are_retried(
    hub: RunningHub, monkeypatch: pytest.MonkeyPatch
):
    tech, customer = await start_visit(hub)
    flaky = FlakySaves(
        hub.hub.store.save_booking,
        {"arriving": 2, "arrived": 3, "in_service": 2, "completed": 3},
    )
    monkeypatch.setattr(hub.hub.store, "save_booking", flaky)

    approach, visit, away = a_visit(time.time() - 3000)
    expected = oracle(approach + visit + away, acc=8.0)
    seq = await send_batches(tech, approach + visit[:40], 1, acc=8.0)
    messages = await statuses_until(customer, "arrived")
    assert [m["status"] for m in messages if m["type"] == "status"][-2:] == [
        "arriving",
        "arrived",
    ]
    seq = await send_batches(tech, visit[40:] + away, seq, acc=8.0)
    messages = await statuses_until(customer, "completed")
    # The socket closes with the booking: no position after the check-out.
    after = []
    with pytest.raises(ConnectionClosed):
        while True:
            after.append(await receive_json(customer, 5.0))
    assert after == []
    assert customer.close_code == 1000

    final = await booking(hub, "visit-1")
    assert final["status"] == "completed"
    # The real crossing times, not when the write finally went through.
    assert final["arrived_t"] == pytest.approx(expected["check_in"])
    assert final["departed_t"] == pytest.approx(expected["check_out"])
    events = [e["event"] for e in final["events"]]
    assert events == ["create", "assign", "en_route", "approach", "check_in", "start_service",
                      "check_out"]  # fmt: skip
    assert flaky.failed == Counter(arriving=2, arrived=3, in_service=2, completed=3)
    assert hub.hub.bookings.current_visit("tech-a") is None
    assert hub.hub.arrivals.pending("visit-1") == []

    # The technician drives on: nobody watches them any more.
    late = await hub.connect(
        "/v1/ws/bookings/visit-1", await hub.token("customer", "cust-1", "visit-1")
    )
    snapshot = await receive_json(late)
    assert "position" not in snapshot and "eta" not in snapshot


async def test_the_next_fix_retries_a_pending_check_in_at_once(
    hub: RunningHub, monkeypatch: pytest.MonkeyPatch
):
    # Background retries far in the future: only the technician's next fix can retry.
    monkeypatch.setattr(arrivals, "RETRY_FIRST_S", 600.0)
    tech, customer = await start_visit(hub)
    flaky = FlakySaves(hub.hub.store.save_booking, {})
    flaky.blocked.add("arrived")
    monkeypatch.setattr(hub.hub.store, "save_booking", flaky)

    approach, visit, _ = a_visit(time.time() - 3000)
    expected = oracle(approach + visit, acc=8.0)
    seq = await send_batches(tech, approach + visit[:40], 1, acc=8.0)
    await statuses_until(customer, "arriving")
    for _ in range(100):  # the check-in was decided and its write failed
        if flaky.failed["arrived"]:
            break
        await asyncio.sleep(0.02)
    assert flaky.failed["arrived"] >= 1
    assert (await booking(hub, "visit-1"))["status"] == "arriving"
    assert [d.event.value for d in hub.hub.arrivals.pending("visit-1")] == ["check_in"]

    flaky.blocked.clear()  # the store is back
    await send_batches(tech, visit[40:41], seq, acc=8.0)
    status = await receive_until(customer, "status", timeout=5.0)
    assert status["status"] == "arrived"
    assert status["t"] == pytest.approx(expected["check_in"])
    assert hub.hub.arrivals.pending("visit-1") == []


async def test_a_cancel_while_a_check_in_is_pending_drops_it(
    hub: RunningHub, monkeypatch: pytest.MonkeyPatch
):
    tech, customer = await start_visit(hub)
    flaky = FlakySaves(hub.hub.store.save_booking, {})
    flaky.blocked.add("arrived")
    monkeypatch.setattr(hub.hub.store, "save_booking", flaky)

    approach, visit, _ = a_visit(time.time() - 3000)
    await send_batches(tech, approach + visit[:40], 1, acc=8.0)
    for _ in range(100):
        if flaky.failed["arrived"]:
            break
        await asyncio.sleep(0.02)
    assert hub.hub.arrivals.pending("visit-1")
    assert (await hub.post("/v1/bookings/visit-1/cancel")).status_code == 200
    await statuses_until(customer, "cancelled")
    assert hub.hub.arrivals.pending("visit-1") == []
    await asyncio.sleep(0.3)  # the retry task ends by itself; nothing more is written
    assert (await booking(hub, "visit-1"))["status"] == "cancelled"
