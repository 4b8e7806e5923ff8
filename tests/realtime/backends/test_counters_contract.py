"""Additive counters (``Store.add_counters``/``get_counters``) on every implementation.

In memory, SQLite (one file) and Redis (the real server, a prefix of this test's own). What
the learned speed model relies on to merge hubs instead of letting the last writer win:
adds from several writers all count, whatever their order or interleaving.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from geofence.eta_speeds import SpeedModel, TrackPoint
from geofence.geo import destination_point
from realtime.backends.memory import MemoryCounters
from realtime.backends.redis import RedisStore, delete_all
from realtime.backends.sqlite import SQLiteStore
from tests.realtime.backends.conftest import REDIS_URL, TEST_RETENTION_S, random_prefix

HOME = (52.52, 13.405)
HOUR_8 = 1_700_035_200.0  # 08:00 UTC


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Any, Any]]:
    """Two handles on one store, as two hubs have: one object in memory and on SQLite (one
    file admits one process), two clients on one prefix on Redis."""
    if request.param == "memory":
        memory = MemoryCounters()
        yield memory, memory
        return
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "doorstep.sqlite3")
        await store.open()
        yield store, store
        await store.close()
        return
    prefix = random_prefix()
    first = RedisStore(REDIS_URL, prefix, history_retention_s=TEST_RETENTION_S)
    second = RedisStore(REDIS_URL, prefix, history_retention_s=TEST_RETENTION_S)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()
    await delete_all(REDIS_URL, prefix)


async def test_counters_start_empty_and_add_up(pair):
    store, _ = pair
    assert await store.get_counters("models", "speeds") == {}
    await store.add_counters("models", "speeds", {"a": 1.5, "b": 2.0})
    await store.add_counters("models", "speeds", {"a": 0.25, "c": -1.0})
    assert await store.get_counters("models", "speeds") == {"a": 1.75, "b": 2.0, "c": -1.0}
    await store.add_counters("models", "speeds", {})  # nothing to add is no error
    assert await store.get_counters("models", "speeds") == {"a": 1.75, "b": 2.0, "c": -1.0}


async def test_counter_sets_are_apart_by_namespace_and_key(pair):
    store, _ = pair
    await store.add_counters("models", "one", {"a": 1.0})
    await store.add_counters("models", "two", {"a": 5.0})
    await store.add_counters("other", "one", {"a": 7.0})
    assert await store.get_counters("models", "one") == {"a": 1.0}
    assert await store.get_counters("models", "two") == {"a": 5.0}
    assert await store.get_counters("other", "one") == {"a": 7.0}


async def test_concurrent_adds_from_two_writers_all_count(pair):
    first, second = pair
    await asyncio.gather(
        *(
            (first if i % 2 else second).add_counters("models", "speeds", {"n": 1.0, "s": 0.5})
            for i in range(40)
        )
    )
    assert await first.get_counters("models", "speeds") == {"n": 40.0, "s": 20.0}
    assert await second.get_counters("models", "speeds") == {"n": 40.0, "s": 20.0}


def track(bearing: float, metres: float, speed: float, t0: float) -> list[TrackPoint]:
    points = []
    for i in range(int(metres // 250) + 1):
        t = t0 + i * 250 / speed
        points.append(TrackPoint(t, *destination_point(*HOME, bearing, i * 250.0), i * 250.0, t))
    return points


async def test_two_hubs_learning_different_trips_both_read_back_the_sum(pair):
    """What ``realtime/arrivals.py`` does with a completed approach (tally, add to the store,
    add here) and at every reload (replace with the store's totals), by two hubs at once."""
    stores = pair
    hubs = [SpeedModel(), SpeedModel()]
    learned = [
        [track(90.0, 3000.0, 9.0, HOUR_8), track(0.0, 2000.0, 4.0, HOUR_8 + 3600.0)],
        [track(180.0, 4000.0, 12.0, HOUR_8 + 86400.0)],
    ]
    everything = SpeedModel()

    async def learn(hub: int, trip: list[TrackPoint]) -> None:
        increments = hubs[hub].tally(trip)
        await stores[hub].add_counters("models", "eta_speeds", increments)
        hubs[hub].add(increments)

    await asyncio.gather(*(learn(hub, trip) for hub in (0, 1) for trip in learned[hub]))
    for trip in (*learned[1], *learned[0]):
        everything.add(everything.tally(trip))
    for hub, store in zip(hubs, stores, strict=True):
        hub.replace(await store.get_counters("models", "eta_speeds"))
        assert hub.counters() == pytest.approx(everything.counters())
        for bearing in (0.0, 90.0, 180.0):
            at = destination_point(*HOME, bearing, 1000.0)
            assert hub.speed_mps(*at, HOUR_8) == pytest.approx(everything.speed_mps(*at, HOUR_8))
