"""What only the Redis backend has: key layout, retention, reconnects.

The shared behaviour is in ``test_contract.py``; these tests are about Redis itself.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from realtime.backends.base import BusMessage
from realtime.backends.redis import Keys, RedisBus, RedisStore, delete_all
from tests.realtime.backends.conftest import REDIS_URL, random_prefix, redis_bus
from tests.realtime.backends.test_contract import (
    T0,
    collector,
    fix,
    key_of,
    new_alert,
    new_booking,
    new_incident,
    wait_for,
)

UNREACHABLE = "redis://127.0.0.1:1/0"


async def keys_of(prefix: str) -> list[bytes]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        found: list[bytes] = []
        for pattern in Keys(prefix).patterns:
            found += [key async for key in client.scan_iter(match=pattern)]
        return found
    finally:
        await client.aclose()


async def test_layout_is_one_slot_for_the_control_plane_and_one_per_technician(
    redis_prefix: str,
) -> None:
    store = RedisStore(REDIS_URL, redis_prefix, history_retention_s=3600)
    await store.open()
    try:
        booking, events = new_booking(technician_id="tech-a")
        await store.save_booking(booking, events)
        incident = new_incident()
        await store.save_incident(incident, key_of(incident), list(incident.audit))
        alert, entry = new_alert("al-1", T0)
        await store.save_alert(alert, [entry])
        await store.put_document("zones", "z1", b"{}")
        await store.append_fixes([fix(1, T0, "tech-a"), fix(1, T0, "tech-b")])
    finally:
        await store.close()

    slots: defaultdict[int, list[str]] = defaultdict(list)
    for key in await keys_of(redis_prefix):
        slots[key_slot(key)].append(key.decode())
    core = key_slot(f"{{{redis_prefix}}}".encode())
    assert sorted(slots[core]) == sorted(
        f"{{{redis_prefix}}}:{name}"
        for name in (
            "bookings",
            "bookings:active",
            "bookings:active-of:tech-a",
            "booking-audit:b1",
            "incidents",
            "incidents:open",
            "incidents:by-reporter",
            "incident-audit:inc-1",
            "alerts",
            "alerts:t",
            "alerts:open",
            "alert-audit:al-1",
            "doc:zones",
        )
    )
    for technician in ("tech-a", "tech-b"):
        tag = f"{{{redis_prefix}:tech:{technician}}}"
        assert sorted(slots[key_slot(tag.encode())]) == sorted(
            f"{tag}:{kind}" for kind in ("fixes", "seqs", "times", "head")
        )
    assert sum(len(keys) for keys in slots.values()) == 13 + 2 * 4


async def test_history_is_trimmed_by_age_but_resume_state_is_kept(redis_prefix: str) -> None:
    store = RedisStore(REDIS_URL, redis_prefix, history_retention_s=0.2)
    await store.open()
    try:
        await store.append_fixes([fix(1, T0 + 1), fix(2, T0 + 2)])
        await asyncio.sleep(0.3)
        await store.append_fixes([fix(3, T0 + 3)])  # trims what arrived > 0.2 s ago
        assert [f.seq for f in await store.track("tech-1", 0, T0 + 10, 100)] == [3]
        assert await store.highest_seq("tech-1") == 3
        # The newest fix by time survives the trim even when it is the one trimmed.
        await store.append_fixes([fix(4, T0 - 50)])
        await asyncio.sleep(0.3)
        await store.append_fixes([fix(5, T0 - 40)])
        assert [f.seq for f in await store.track("tech-1", 0, T0 + 10, 100)] == [5]
        assert await store.last_fix("tech-1") == fix(3, T0 + 3)
        # The index shrinks with the stream: nothing dangles.
        fixes_key, seqs_key, times_key, _ = store.keys.technician("tech-1")
        assert await store.redis.xlen(fixes_key) == 1
        assert await store.redis.scard(seqs_key) == 1
        assert await store.redis.zcard(times_key) == 1
    finally:
        await store.close()


async def test_history_of_a_technician_who_stopped_sending_expires(redis_prefix: str) -> None:
    store = RedisStore(REDIS_URL, redis_prefix, history_retention_s=0.2)
    await store.open()
    try:
        await store.append_fixes([fix(1, T0 + 1), fix(2, T0 + 2)])
        await asyncio.sleep(0.35)  # and no append since, which would trim
        assert await store.track("tech-1", 0, T0 + 10, 100) == []
        assert await store.highest_seq("tech-1") == 2
        assert await store.last_fix("tech-1") == fix(2, T0 + 2)
        assert [key.decode() for key in await keys_of(redis_prefix)] == [
            store.keys.technician("tech-1")[3]
        ]
    finally:
        await store.close()


async def test_delete_all_removes_every_key_of_the_prefix_and_nothing_else(
    redis_prefix: str,
) -> None:
    neighbour = random_prefix()
    for prefix in (redis_prefix, neighbour):
        store = RedisStore(REDIS_URL, prefix, history_retention_s=3600)
        await store.open()
        await store.append_fixes([fix(1, T0)])
        await store.put_document("zones", "z1", b"{}")
        await store.close()
    assert await delete_all(REDIS_URL, redis_prefix) == 5
    assert await keys_of(redis_prefix) == []
    assert len(await keys_of(neighbour)) == 5
    await delete_all(REDIS_URL, neighbour)


async def test_bus_reconnects_and_resubscribes_after_its_connections_are_killed(
    redis_buses: tuple[RedisBus, RedisBus],
) -> None:
    hub_a, hub_b = redis_buses
    received, received_cb = collector()
    hub_b.subscribe("booking:b1", received_cb)
    await hub_b.wait_synced()

    admin = aioredis.Redis.from_url(REDIS_URL)
    try:
        clients = await admin.client_list()
        killed = [c["id"] for c in clients if c.get("name") == hub_b.client_name]
        assert killed, "the bus's connections carry its client name"
        for client_id in killed:
            await admin.client_kill_filter(_id=client_id)
    finally:
        await admin.aclose()

    await wait_for(lambda: not hub_b.connected, timeout=2)
    await hub_b.wait_synced(timeout=5)
    await hub_a.publish("booking:b1", BusMessage(kind="status", text="after"))
    await wait_for(lambda: [m.text for m in received] == ["after"])


async def kill_connections_of(bus: RedisBus) -> int:
    admin = aioredis.Redis.from_url(REDIS_URL)
    try:
        clients = await admin.client_list()
        killed = [c["id"] for c in clients if c.get("name") == bus.client_name]
        for client_id in killed:
            await admin.client_kill_filter(_id=client_id)
    finally:
        await admin.aclose()
    return len(killed)


async def test_a_durable_channel_loses_nothing_while_a_hub_reconnects(redis_prefix: str) -> None:
    """Operators' messages (incidents) travel in a stream each hub reads from where it left
    off: published while the other hub's connections are down, they still arrive, once."""
    hub_a = redis_bus(REDIS_URL, redis_prefix, durable_channels={"ops"})
    hub_b = redis_bus(REDIS_URL, redis_prefix, durable_channels={"ops"})
    await hub_a.connect()
    await hub_b.connect()
    try:
        ops, ops_cb = collector()
        live, live_cb = collector()
        hub_b.subscribe("ops", ops_cb)
        hub_b.subscribe("booking:b1", live_cb)
        await hub_b.wait_synced()
        await hub_a.publish("ops", BusMessage(kind="incident", text="before", urgent=True))
        await wait_for(lambda: [m.text for m in ops] == ["before"])

        assert await kill_connections_of(hub_b) > 0
        # Published at once, while hub B is still reconnecting.
        for index in range(5):
            await hub_a.publish("ops", BusMessage(kind="incident", text=f"during-{index}"))
            await hub_a.publish("booking:b1", BusMessage(kind="position", text=f"p{index}"))
        await wait_for(lambda: len(ops) == 6, timeout=5)
        assert [m.text for m in ops] == ["before"] + [f"during-{i}" for i in range(5)]
        await asyncio.sleep(0.3)
        assert len(ops) == 6  # and nothing twice
        # The same moment on a pub/sub channel: whatever arrived, arrived at most once.
        assert len(live) == len({m.text for m in live}) <= 5
    finally:
        await hub_a.disconnect()
        await hub_b.disconnect()


async def test_a_durable_channel_is_read_only_while_subscribed(redis_prefix: str) -> None:
    hub_a = redis_bus(REDIS_URL, redis_prefix, durable_channels={"ops"})
    hub_b = redis_bus(REDIS_URL, redis_prefix, durable_channels={"ops"})
    await hub_a.connect()
    await hub_b.connect()
    try:
        await hub_a.publish("ops", BusMessage(kind="incident", text="old"))
        await asyncio.sleep(2.5)  # older than the look-back of a new subscription
        ops, ops_cb = collector()
        hub_b.subscribe("ops", ops_cb)
        await hub_a.publish("ops", BusMessage(kind="incident", text="new"))
        await wait_for(lambda: [m.text for m in ops] == ["new"])
    finally:
        await hub_a.disconnect()
        await hub_b.disconnect()


async def test_unsent_publishes_are_bounded_and_local_delivery_goes_on() -> None:
    class SmallBus(RedisBus):
        MAX_PENDING = 3

    bus = redis_bus(UNREACHABLE, random_prefix(), bus=SmallBus)  # never connected: nothing is sent
    received, received_cb = collector()
    bus.subscribe("fleet", received_cb)
    for n in range(5):
        await bus.publish("fleet", BusMessage(kind="fleet", text=str(n)))
    assert [m.text for m in received] == ["0", "1", "2", "3", "4"]
    assert bus.dropped == 2


async def test_unreachable_redis_fails_at_start_up() -> None:
    with pytest.raises(RedisConnectionError):
        await redis_bus(UNREACHABLE, random_prefix()).connect()
    store = RedisStore(UNREACHABLE, random_prefix(), history_retention_s=60)
    with pytest.raises(RedisConnectionError):
        await store.open()


async def test_subscribing_many_channels_does_not_rebuild_the_wanted_set_each_time(
    redis_buses: tuple[RedisBus, RedisBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub subscribes a channel per watched booking; each subscribe confirmation used to
    rebuild the whole wanted set (quadratic in the channels, 5 % of a Redis hub's time at
    saturation). Counted, not timed: the channel-name function is called a few times per
    channel, not once per channel per confirmation."""
    _, hub_b = redis_buses
    calls = 0
    real = type(hub_b.keys).channel

    def counting(keys: Any, channel: str) -> str:
        nonlocal calls
        calls += 1
        return real(keys, channel)

    monkeypatch.setattr(type(hub_b.keys), "channel", counting)
    channels = 400
    for n in range(channels):
        hub_b.subscribe(f"booking:many-{n}", lambda message: None)
    await hub_b.wait_synced(timeout=10)
    assert calls < 10 * channels, calls  # quadratic would be ~channels**2 / 2 = 80,000
