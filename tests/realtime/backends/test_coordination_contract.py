"""The coordination contract (locks, leases, work queues) on every Store implementation.

What several hubs need to do a thing once. SQLite runs in one process, so "another hub" is
a second caller of the same store there; on Redis the multi-hub cases use two stores on one
prefix, which is what two hubs of one deployment have.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from realtime.backends.base import LockUnavailable, Store
from realtime.backends.redis import RedisStore
from tests.realtime.backends.conftest import REDIS_URL, TEST_RETENTION_S

pytestmark = pytest.mark.asyncio

T0 = 1_700_000_000.0


async def test_lock_excludes_a_second_holder_until_released(store: Store) -> None:
    order: list[str] = []

    async def worker(name: str, hold_s: float) -> None:
        async with store.lock("incident:inc-1", ttl_s=10):
            order.append(f"{name} in")
            await asyncio.sleep(hold_s)
            order.append(f"{name} out")

    first = asyncio.create_task(worker("a", 0.2))
    await asyncio.sleep(0.05)
    await worker("b", 0)
    await first
    assert order == ["a in", "a out", "b in", "b out"]


async def test_locks_of_different_names_do_not_wait_for_each_other(store: Store) -> None:
    async with store.lock("incident:one", ttl_s=10):
        async with asyncio.timeout(1):
            async with store.lock("incident:two", ttl_s=10):
                pass


async def test_a_lock_is_free_again_after_an_error_inside(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.lock("x", ttl_s=10):
            raise RuntimeError("boom")
    async with asyncio.timeout(1):
        async with store.lock("x", ttl_s=10):
            pass


async def test_a_lease_belongs_to_one_holder_and_renews(store: Store) -> None:
    assert await store.hold_lease("watchdog", "hub-a", ttl_s=30)
    assert await store.hold_lease("watchdog", "hub-a", ttl_s=30)
    assert not await store.hold_lease("watchdog", "hub-b", ttl_s=30)
    assert await store.hold_lease("other", "hub-b", ttl_s=30)


async def test_work_is_enqueued_once_per_key(store: Store) -> None:
    assert await store.enqueue_work("safety", "inc-1:T1", b"one")
    assert not await store.enqueue_work("safety", "inc-1:T1", b"again")
    assert await store.enqueue_work("safety", "inc-1:T2", b"two")
    items = await store.claim_work("safety", "hub-a", 10, T0, reclaim_idle_s=60)
    assert [item.payload for item in items] == [b"one", b"two"]


async def test_claimed_work_is_not_handed_out_again_and_ack_ends_it(store: Store) -> None:
    await store.enqueue_work("safety", "k1", b"one")
    [item] = await store.claim_work("safety", "hub-a", 10, T0, reclaim_idle_s=60)
    assert await store.claim_work("safety", "hub-a", 10, T0 + 1, reclaim_idle_s=60) == []
    assert await store.claim_work("safety", "hub-b", 10, T0 + 1, reclaim_idle_s=60) == []
    await store.ack_work("safety", item.id)
    assert await store.claim_work("safety", "hub-b", 10, T0 + 3600, reclaim_idle_s=0) == []


async def test_queues_are_separate(store: Store) -> None:
    await store.enqueue_work("safety", "k", b"s")
    await store.enqueue_work("other", "k", b"o")
    [item] = await store.claim_work("other", "hub-a", 10, T0, reclaim_idle_s=60)
    assert item.payload == b"o"


async def test_work_left_idle_by_a_dead_consumer_is_reclaimed(store: Store) -> None:
    await store.enqueue_work("safety", "k1", b"one")
    [taken] = await store.claim_work("safety", "hub-a", 10, T0, reclaim_idle_s=0.2)
    # hub-a dies without acknowledging. Before the idle time nobody else gets it...
    assert await store.claim_work("safety", "hub-b", 10, T0 + 0.05, reclaim_idle_s=5) == []
    await asyncio.sleep(0.3)  # Redis measures idleness on its own clock
    [again] = await store.claim_work("safety", "hub-b", 10, T0 + 0.3, reclaim_idle_s=0.2)
    assert (again.id, again.payload) == (taken.id, b"one")
    await store.ack_work("safety", again.id)
    await asyncio.sleep(0.3)
    assert await store.claim_work("safety", "hub-c", 10, T0 + 9, reclaim_idle_s=0.2) == []


@pytest.fixture
async def two_redis_stores(redis_prefix: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    first = RedisStore(REDIS_URL, redis_prefix, history_retention_s=TEST_RETENTION_S)
    second = RedisStore(REDIS_URL, redis_prefix, history_retention_s=TEST_RETENTION_S)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


async def test_redis_lock_excludes_another_hub(two_redis_stores) -> None:
    a, b = two_redis_stores
    async with a.lock("incident:inc-1", ttl_s=10):
        started = asyncio.get_running_loop().time()
        with pytest.raises(LockUnavailable):
            async with b.lock("incident:inc-1", ttl_s=10):
                pass
        # It waited (LOCK_WAIT_S) before giving up, rather than failing at once.
        assert asyncio.get_running_loop().time() - started > 1.0


async def test_redis_lock_of_a_dead_hub_expires(two_redis_stores) -> None:
    a, b = two_redis_stores
    holder = a.redis.lock(a.keys.lock("incident:inc-9"), timeout=0.3)
    assert await holder.acquire()  # taken and never released: its hub was killed
    async with asyncio.timeout(3):
        async with b.lock("incident:inc-9", ttl_s=10):
            pass


async def test_redis_lease_passes_to_another_hub_when_it_expires(two_redis_stores) -> None:
    a, b = two_redis_stores
    assert await a.hold_lease("watchdog", "hub-a", ttl_s=0.2)
    assert not await b.hold_lease("watchdog", "hub-b", ttl_s=0.2)
    await asyncio.sleep(0.3)  # hub-a stopped renewing
    assert await b.hold_lease("watchdog", "hub-b", ttl_s=0.2)
    assert not await a.hold_lease("watchdog", "hub-a", ttl_s=0.2)


async def test_redis_work_is_shared_between_hubs_without_doubles(two_redis_stores) -> None:
    a, b = two_redis_stores
    for index in range(20):
        # Both hubs see the step due and try to enqueue it: it goes in once.
        added = [
            await a.enqueue_work("safety", f"inc-{index}:T1", b"%d" % index),
            await b.enqueue_work("safety", f"inc-{index}:T1", b"%d" % index),
        ]
        assert added == [True, False]
    got_a = await a.claim_work("safety", "hub-a", 7, T0, reclaim_idle_s=60)
    got_b = await b.claim_work("safety", "hub-b", 100, T0, reclaim_idle_s=60)
    payloads = sorted(int(item.payload) for item in got_a + got_b)
    assert payloads == list(range(20))
    assert len(got_a) == 7


async def test_work_whose_handling_failed_is_handed_out_again_after_the_idle_time(
    store: Store,
) -> None:
    await store.enqueue_work("safety", "k1", b"one")
    [taken] = await store.claim_work("safety", "hub-a", 10, T0, reclaim_idle_s=0.2)
    # hub-a's handler failed and did not acknowledge: hub-a itself gets it again later.
    await asyncio.sleep(0.3)
    [again] = await store.claim_work("safety", "hub-a", 10, T0 + 0.3, reclaim_idle_s=0.2)
    assert again.id == taken.id


async def test_work_kept_alive_is_not_reclaimed_while_its_consumer_works(store: Store) -> None:
    """Issue 11: a step whose deliveries outlast the idle time was taken over by another hub
    and its contacts notified twice. The working consumer now keeps its claim alive."""
    await store.enqueue_work("safety", "k1", b"one")
    [taken] = await store.claim_work("safety", "hub-a", 10, T0, reclaim_idle_s=0.3)
    for tick in range(1, 5):  # hub-a works for 0.8 s, keeping the item every 0.2 s
        await asyncio.sleep(0.2)
        assert await store.keep_work("safety", "hub-a", taken.id, T0 + 0.2 * tick)
        now = T0 + 0.2 * tick
        assert await store.claim_work("safety", "hub-b", 10, now, reclaim_idle_s=0.3) == []
    # hub-a stops keeping it (it died): hub-b takes it over after the idle time...
    await asyncio.sleep(0.4)
    [again] = await store.claim_work("safety", "hub-b", 10, T0 + 1.3, reclaim_idle_s=0.3)
    assert again.id == taken.id
    # ...and hub-a, waking up, cannot take it back by keeping it.
    assert not await store.keep_work("safety", "hub-a", taken.id, T0 + 1.4)
    assert await store.keep_work("safety", "hub-b", taken.id, T0 + 1.4)
    await store.ack_work("safety", again.id)
    assert not await store.keep_work("safety", "hub-b", taken.id, T0 + 1.5)
