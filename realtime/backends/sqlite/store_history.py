"""The store's location history in SQLite: append, track, resume, retention and erasure.

Fixes are ~99% of all writes: a batch is one transaction, ``INSERT OR IGNORE`` on
(technician, seq) so the history writer's retry is idempotent. Purged or erased fixes leave
their highest seq in ``seq_floor``, so ``highest_seq`` (resume, idempotent appends) does not
go back when the fixes go.
"""

from __future__ import annotations

from typing import Any

import msgspec

from realtime.backends.base import StoredFix
from realtime.backends.sqlite.connection import SQLiteConnection, transaction


class SQLiteHistory(SQLiteConnection):
    """The location-history part of ``SQLiteStore``."""

    async def append_fixes(self, fixes: list[StoredFix]) -> None:
        if fixes:
            await self._run(self._append_fixes, fixes)

    def _append_fixes(self, fixes: list[StoredFix]) -> None:
        with transaction(self.db) as db:
            db.executemany(
                "INSERT OR IGNORE INTO locations (technician_id, seq, t, lat, lon, acc, speed,"
                " heading, received_t) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [tuple(msgspec.structs.astuple(f)) for f in fixes],
            )

    async def track(
        self, technician_id: str, t_from: float, t_to: float, limit: int
    ) -> list[StoredFix]:
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT technician_id, seq, t, lat, lon, acc, speed, heading, received_t"
                " FROM locations WHERE technician_id = ? AND t >= ? AND t <= ?"
                " ORDER BY t, seq LIMIT ?",
                (technician_id, t_from, t_to, limit),
            ).fetchall()
        )
        return [StoredFix(*row) for row in rows]

    async def highest_seq(self, technician_id: str) -> int:
        row = await self._run(
            lambda: self.db.execute(
                # The stored fixes, or the floor left by fixes purged or erased.
                "SELECT MAX(m) FROM (SELECT MAX(seq) AS m FROM locations WHERE technician_id = ?"
                " UNION ALL SELECT seq FROM seq_floor WHERE technician_id = ?)",
                (technician_id, technician_id),
            ).fetchone()
        )
        return -1 if row is None or row[0] is None else int(row[0])

    async def last_fix(self, technician_id: str) -> StoredFix | None:
        row = await self._run(
            lambda: self.db.execute(
                "SELECT technician_id, seq, t, lat, lon, acc, speed, heading, received_t"
                " FROM locations WHERE technician_id = ? ORDER BY t DESC, seq DESC LIMIT 1",
                (technician_id,),
            ).fetchone()
        )
        return StoredFix(*row) if row else None

    # Rows deleted per transaction: the single writer thread serves fix appends between two
    # chunks, so a big purge (the first run after an upgrade) never stalls the acks for long.
    PURGE_CHUNK = 5000

    async def purge_fixes_before(self, cutoff: float) -> int:
        return await self._purge_fixes("t < ?", (cutoff,))

    async def erase_fixes(self, technician_id: str) -> int:
        return await self._purge_fixes("technician_id = ?", (technician_id,))

    async def _purge_fixes(self, where: str, args: tuple[Any, ...]) -> int:
        def chunk() -> int:
            with transaction(self.db) as db:
                rows = db.execute(
                    f"SELECT technician_id, seq FROM locations WHERE {where} LIMIT ?",
                    (*args, self.PURGE_CHUNK),
                ).fetchall()
                db.executemany(
                    "INSERT INTO seq_floor (technician_id, seq) VALUES (?, ?)"
                    " ON CONFLICT (technician_id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                    rows,
                )
                db.executemany("DELETE FROM locations WHERE technician_id = ? AND seq = ?", rows)
                return len(rows)

        total = 0
        while True:
            deleted = await self._run(chunk)
            total += deleted
            if deleted < self.PURGE_CHUNK:
                return total
