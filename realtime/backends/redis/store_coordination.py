"""The store's coordination between hubs on Redis: named locks, leases, the durable work queue.

A work queue is a stream with one consumer group (``hubs``): each hub reads as its own
consumer and XAUTOCLAIMs the entries a dead hub left pending; idleness is measured on Redis's
clock, the one every hub agrees on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import LockError, ResponseError

from realtime.backends.base import LockUnavailable, WorkItem
from realtime.backends.redis.client import COMMAND_TIMEOUT_S, CONNECTION_ERRORS, bounded
from realtime.backends.redis.keys import Keys
from realtime.backends.redis.scripts import ScriptedClient

log = logging.getLogger("doorstep.redis")

WORK_GROUP = "hubs"
# How long "this work was enqueued" is remembered: far longer than any incident stays open.
WORK_SEEN_TTL_S = 7 * 24 * 3600
# How long a lock() waits for a lock another hub holds before giving up (LockUnavailable).
LOCK_WAIT_S = 5.0


class RedisCoordination(ScriptedClient):
    """The coordination part of ``RedisStore`` (its scripts: ``hold_lease``, ``enqueue_work``,
    ``keep_work``)."""

    keys: Keys
    _groups: set[str]  # work streams whose consumer group exists

    @asynccontextmanager
    async def lock(self, name: str, ttl_s: float) -> AsyncIterator[None]:
        """redis-py's Lock (SET NX PX with a token, released by a script that checks it)."""
        lock = self.redis.lock(
            self.keys.lock(name), timeout=ttl_s, blocking_timeout=LOCK_WAIT_S, sleep=0.02
        )
        try:
            async with asyncio.timeout(LOCK_WAIT_S + COMMAND_TIMEOUT_S):
                acquired = await lock.acquire()
        except (*CONNECTION_ERRORS, TimeoutError, LockError) as exc:
            raise LockUnavailable(f"lock {name!r}: {exc}") from exc
        if not acquired:
            raise LockUnavailable(f"lock {name!r} is held by another hub")
        try:
            yield
        finally:
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    await lock.release()
            except (*CONNECTION_ERRORS, TimeoutError, LockError) as exc:
                # Expired (held past ttl_s) or Redis away: it expires by itself either way.
                log.warning("lock %s not released cleanly: %s", name, exc)

    @bounded
    async def hold_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        granted = await self._scripts["hold_lease"](
            keys=[self.keys.lease(name)], args=[holder, max(1, int(ttl_s * 1000))]
        )
        return bool(granted)

    @bounded
    async def enqueue_work(self, queue: str, dedupe_key: str, payload: bytes) -> bool:
        keys = [self.keys.work_seen(queue, dedupe_key), self.keys.work(queue)]
        added = await self._scripts["enqueue_work"](keys=keys, args=[payload, WORK_SEEN_TTL_S])
        return bool(added)

    async def _ensure_group(self, stream: str) -> None:
        try:
            await self.redis.xgroup_create(stream, WORK_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @bounded
    async def claim_work(
        self, queue: str, consumer: str, count: int, now: float, reclaim_idle_s: float
    ) -> list[WorkItem]:
        """XAUTOCLAIM what a dead consumer left idle, then XREADGROUP new entries.

        ``now`` is unused: the server measures idleness itself, on its own clock, which is
        the one clock every hub agrees on.
        """
        stream = self.keys.work(queue)
        if stream not in self._groups:
            await self._ensure_group(stream)
            self._groups.add(stream)
        try:
            _, reclaimed, *_ = await self.redis.xautoclaim(
                stream, WORK_GROUP, consumer, int(reclaim_idle_s * 1000), "0-0", count=count
            )
            fresh = await self.redis.xreadgroup(WORK_GROUP, consumer, {stream: ">"}, count=count)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._groups.discard(stream)  # the stream was deleted: recreate next time
            return []
        entries = list(reclaimed) + [e for _, batch in fresh for e in batch]
        return [
            WorkItem(entry_id.decode(), fields[b"p"])
            for entry_id, fields in entries
            if fields  # a reclaimed entry deleted meanwhile comes back without fields
        ]

    @bounded
    async def keep_work(self, queue: str, consumer: str, item_id: str, now: float) -> bool:
        """``now`` is unused: Redis resets the idle time on its own clock."""
        kept = await self._scripts["keep_work"](
            keys=[self.keys.work(queue)], args=[WORK_GROUP, consumer, item_id]
        )
        return bool(kept)

    @bounded
    async def ack_work(self, queue: str, item_id: str) -> None:
        stream = self.keys.work(queue)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, WORK_GROUP, item_id)
            pipe.xdel(stream, item_id)
            await pipe.execute()
