"""The store's coordination in SQLite: named locks, leases, the durable work queue.

One process owns the file, so locks and leases are in memory; work items are rows, because a
step queued before a crash must still be done after the restart (``connect`` frees the
claims of the process that is gone).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from realtime.backends.base import WorkItem
from realtime.backends.local_locks import NamedLocks
from realtime.backends.sqlite.connection import SQLiteConnection, transaction


class SQLiteCoordination(SQLiteConnection):
    """The coordination part of ``SQLiteStore``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._locks = NamedLocks()
        self._leases: dict[str, str] = {}

    @asynccontextmanager
    async def lock(self, name: str, ttl_s: float) -> AsyncIterator[None]:
        async with self._locks.hold(name):
            yield

    async def hold_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        return self._leases.setdefault(name, holder) == holder

    async def enqueue_work(self, queue: str, dedupe_key: str, payload: bytes) -> bool:
        def add() -> bool:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO work (queue, dedupe_key, payload) VALUES (?, ?, ?)",
                (queue, dedupe_key, payload),
            )
            return cursor.rowcount > 0

        return await self._run(add)

    async def claim_work(
        self, queue: str, consumer: str, count: int, now: float, reclaim_idle_s: float
    ) -> list[WorkItem]:
        def claim() -> list[WorkItem]:
            with transaction(self.db) as db:
                rows = db.execute(
                    # Idle claims are free again, this consumer's own too (as XAUTOCLAIM
                    # does): an item whose handling failed is retried, not stuck.
                    "SELECT id, payload FROM work WHERE queue = ? AND done = 0 AND ("
                    "claimed_by IS NULL OR claimed_t <= ?) ORDER BY id LIMIT ?",
                    (queue, now - reclaim_idle_s, count),
                ).fetchall()
                db.executemany(
                    "UPDATE work SET claimed_by = ?, claimed_t = ? WHERE id = ?",
                    [(consumer, now, row[0]) for row in rows],
                )
            return [WorkItem(str(row[0]), bytes(row[1])) for row in rows]

        return await self._run(claim)

    async def keep_work(self, queue: str, consumer: str, item_id: str, now: float) -> bool:
        def keep() -> bool:
            cursor = self.db.execute(
                "UPDATE work SET claimed_t = ? WHERE queue = ? AND id = ? AND claimed_by = ?"
                " AND done = 0",
                (now, queue, int(item_id), consumer),
            )
            return cursor.rowcount > 0

        return await self._run(keep)

    async def ack_work(self, queue: str, item_id: str) -> None:
        await self._run(
            lambda: self.db.execute(
                "UPDATE work SET done = 1 WHERE queue = ? AND id = ?", (queue, int(item_id))
            )
        )
