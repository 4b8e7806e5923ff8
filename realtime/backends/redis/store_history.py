"""The store's location history on Redis: append, track, resume, retention and erasure.

Fixes are ~99% of all writes, so each technician's history lives under its own hash tag
(``{p:tech:<id>}``, see ``keys.py``) and is spread over a cluster by technician, one
technician's batch staying atomic (one Lua script).

What differs from SQLite, on purpose: location history is trimmed by age (the stream's MINID,
``DOORSTEP_REDIS_HISTORY_RETENTION_S``) because Redis keeps it in memory; ``head`` is not
trimmed (nor does it expire, as the history of a technician who stopped sending does), so
``highest_seq`` and ``last_fix`` answer as if nothing had been, until the retention job
(``purge_fixes_before``, by fix time) drops ``last`` once it is past the privacy retention;
``seq`` stays. A trimmed seq sent again would be stored again (the hub never sends one at or
below ``highest_seq``). Seqs must be within the protocol's 0..2^53-1, which the time
index's sort key relies on. Only the single-node client is used for now; on a Cluster a
batch of several technicians' fixes would be one MULTI per slot instead of one for the whole
batch (each technician stays atomic, and the history writer's retry is idempotent per seq).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import msgspec

from realtime.backends.base import StoredFix
from realtime.backends.redis.client import COMMAND_TIMEOUT_S, bounded
from realtime.backends.redis.keys import MAX_SEQ, SEQ_DIGITS, Keys, score, seq_key
from realtime.backends.redis.scripts import ScriptedClient

_fix_decoder = msgspec.json.Decoder(StoredFix)
_encode = msgspec.json.encode


class RedisHistory(ScriptedClient):
    """The location-history part of ``RedisStore`` (its scripts: ``append_fixes``,
    ``purge_fixes``, ``erase_fixes``)."""

    keys: Keys
    history_retention_s: float | None

    # Entries trimmed per append at most, so a script never blocks Redis for long (e.g. right
    # after the retention was shortened); the rest goes with the following appends.
    TRIM_BATCH = 1000
    # Keys or hash fields per SCAN page of the retention job (it runs every few minutes).
    SCAN_COUNT = 500

    @bounded
    async def append_fixes(self, fixes: list[StoredFix]) -> None:
        if not fixes:
            return
        by_technician: defaultdict[str, list[StoredFix]] = defaultdict(list)
        for fix in fixes:
            if not 0 <= fix.seq <= MAX_SEQ:
                # The 16-digit sort key needs it; the hub's ingest refuses such seqs anyway.
                raise ValueError(f"seq {fix.seq} is outside 0..{MAX_SEQ}")
            by_technician[fix.technician_id].append(fix)
        retention_ms = (
            0 if self.history_retention_s is None else max(1, int(self.history_retention_s * 1000))
        )
        script = self._scripts["append_fixes"]
        calls = []
        for technician_id, batch in by_technician.items():
            args: list[Any] = [retention_ms, self.TRIM_BATCH]
            for fix in batch:
                args += [seq_key(fix.seq), score(fix.t), _encode(fix)]
            calls.append((self.keys.technician(technician_id), args))
        if len(calls) == 1:
            await script(keys=calls[0][0], args=calls[0][1])
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            # MULTI/EXEC around one script per technician: the whole batch or nothing, like
            # SQLite's one transaction (redis-py loads the script before the MULTI).
            for keys, args in calls:
                await script(keys=keys, args=args, client=pipe)
            await pipe.execute()

    @bounded
    async def track(
        self, technician_id: str, t_from: float, t_to: float, limit: int
    ) -> list[StoredFix]:
        if limit == 0:
            return []
        members = await self.redis.zrange(
            self.keys.technician(technician_id)[2],
            score(t_from),
            score(t_to),
            byscore=True,
            offset=0,
            num=limit,  # negative: no limit, as in SQLite
        )
        return [_fix_decoder.decode(member[SEQ_DIGITS:]) for member in members]

    @bounded
    async def highest_seq(self, technician_id: str) -> int:
        raw = await self.redis.hget(self.keys.technician(technician_id)[3], "seq")
        return -1 if raw is None else int(raw)

    @bounded
    async def last_fix(self, technician_id: str) -> StoredFix | None:
        raw = await self.redis.hget(self.keys.technician(technician_id)[3], "last")
        return None if raw is None else _fix_decoder.decode(raw)

    async def _technician_ids(self) -> list[str]:
        ids: set[str] = set()
        async for key in self.redis.scan_iter(
            match=self.keys.technician_pattern, count=self.SCAN_COUNT
        ):
            technician_id = self.keys.technician_of(key.decode())
            if technician_id is not None:
                ids.add(technician_id)
        return sorted(ids)

    async def purge_fixes_before(self, cutoff: float) -> int:
        total = 0
        for technician_id in await self._technician_ids():
            while True:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    removed = await self._scripts["purge_fixes"](
                        keys=self.keys.technician(technician_id),
                        args=[score(cutoff), self.TRIM_BATCH],
                    )
                total += int(removed)
                if int(removed) < self.TRIM_BATCH:
                    break
        return total

    @bounded
    async def erase_fixes(self, technician_id: str) -> int:
        erased = await self._scripts["erase_fixes"](keys=self.keys.technician(technician_id))
        return int(erased)
