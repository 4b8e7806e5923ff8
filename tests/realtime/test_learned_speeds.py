"""The speed model by area and hour in real hubs: learned from an approach, kept as counters
in the store, read back at start, and merged across hubs instead of last-writer-wins."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from geofence.geo import destination_point
from realtime.arrivals import MODELS, SPEEDS_KEY
from realtime.backends.redis import delete_all
from tests.conftest import TEST_REDIS_URL, RunningHub, receive_json, receive_until
from tests.realtime.test_arrival_e2e import HOME, collect, drive, send_track, stay


async def approach(hub: RunningHub, booking_id: str, technician: str, bearing: float) -> None:
    """A booking driven to its check-in: 3 km at 10 m/s from ``bearing`` of HOME."""
    await hub.create_booking(
        id=booking_id, technician_id=technician, destination={"lat": HOME[0], "lon": HOME[1]}
    )
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", technician))
    await receive_until(tech, "ack")
    customer = await hub.connect(
        f"/v1/ws/bookings/{booking_id}", await hub.token("customer", "cust-1", booking_id)
    )
    await receive_json(customer)
    assert (await hub.post(f"/v1/bookings/{booking_id}/en_route")).status_code == 200
    start = destination_point(*HOME, bearing, 3000.0)
    parked = destination_point(*HOME, bearing, 10.0)
    points = drive(start, parked, time.time() - 3000, speed=10.0)
    await send_track(tech, points + stay(parked, points[-1][0] + 5, 600)[:40], 1)
    await collect(customer, "arrived")


def cells_of(counters: dict[str, float]) -> set[str]:
    return {field.split("|")[0] for field in counters}


async def test_an_approach_teaches_the_speeds_which_a_restarted_hub_reads_back(hub: RunningHub):
    store = hub.hub.store
    assert await store.get_counters(MODELS, SPEEDS_KEY) == {}
    await approach(hub, "learn-speed", "tech-s", 90.0)
    stored = await store.get_counters(MODELS, SPEEDS_KEY)
    metres = sum(v for field, v in stored.items() if field.endswith("|m"))
    seconds = sum(v for field, v in stored.items() if field.endswith("|s"))
    assert 2000 < metres < 3100 and metres / seconds == pytest.approx(10.0, rel=0.15)
    assert len(cells_of(stored)) >= 2  # 3 km crosses ~1.5 km cells
    assert hub.hub.arrivals.speeds.counters() == pytest.approx(stored)
    await hub.restart()
    assert hub.hub.arrivals.speeds.counters() == pytest.approx(stored)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = f"doorstep-test-speeds-{uuid.uuid4().hex[:10]}"
    yield prefix
    await delete_all(TEST_REDIS_URL, prefix)


async def test_two_hubs_on_one_redis_each_learn_a_trip_and_both_see_the_sum(
    hub_factory: Callable[..., Any], redis_prefix: str
):
    shared: dict[str, Any] = {
        "backend": "redis",
        "redis_url": TEST_REDIS_URL,
        "redis_prefix": redis_prefix,
        "models_reload_interval_s": 0.2,
    }
    hub_a, hub_b = await hub_factory(**shared), await hub_factory(**shared)
    await approach(hub_a, "east", "tech-east", 90.0)
    await approach(hub_b, "north", "tech-north", 0.0)
    totals = await hub_a.hub.store.get_counters(MODELS, SPEEDS_KEY)
    model = hub_a.hub.arrivals.speeds
    east_cell = model.cell(*destination_point(*HOME, 90.0, 2500.0))
    north_cell = model.cell(*destination_point(*HOME, 0.0, 2500.0))
    assert {east_cell, north_cell} <= cells_of(totals)
    # Each hub learned one trip itself and reads the other's from the store within a reload.
    for _ in range(100):
        seen = [hub.hub.arrivals.speeds.counters() for hub in (hub_a, hub_b)]
        if all(s == pytest.approx(totals) for s in seen):
            break
        await asyncio.sleep(0.05)
    for counters in seen:
        assert counters == pytest.approx(totals)
    # The sum of both trips (~2.9 km each), not the last writer's one.
    metres = sum(v for field, v in totals.items() if field.endswith("|m"))
    assert 4000 < metres < 6200
