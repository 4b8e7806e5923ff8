"""The roster (``realtime/backends/roster.py``) on Redis, shared by every hub of a deployment.

Key layout (``p`` is ``DOORSTEP_REDIS_PREFIX``; technician ids are members and fields, never
part of a key name, so an id with ``:``, ``{`` or anything else cannot collide or move a key
to another slot)::

    {p}:roster:online   ZSET  technician -> until_t of its lease (hub clock)
    {p}:roster:hub      HASH  technician -> id of the hub holding the lease
    {p}:roster:last     HASH  technician -> RosterEntry JSON, the newest by (t, seq)
    {p}:roster:geo      GEO   technician -> position of that entry (when |lat| <= 85.05...)

Why leases: a hub killed with kill -9 (or cut off with its machine) cannot mark its
technicians offline, and no other hub knows which ones were its. So a hub never says "online"
for good: it holds a lease until a time it passes in and renews it (e.g. every 5 s for 15 s),
and ``online(now)`` only counts leases not expired at the reader's ``now``. A dead hub's
technicians drop out one lease after its last renewal; when they reconnect to another hub,
that hub takes the lease. ``online`` and ``hub`` are one lease split over two keys: the ZSET
answers "live at now" with one ZRANGE BYSCORE, the HASH says whose it is. Leases expired for
longer than ``GC_AFTER_S`` are removed by later renewals (a few per call), so leases of
technicians who never come back do not pile up.

Why one hash tag, ``{p}``: every script here touches several of these keys at once (the
lease's two keys; the last entry and the GEO set, which must agree), and Redis Cluster only
runs a script whose keys share a slot. A GEO search runs on one key anyway, so the positions
cannot be spread over slots whatever the tag. These keys live under ``{p}:`` next to the
control plane (bookings, incidents) on the same cluster node, and ``delete_all``
(``client.py``, SCAN ``{p}:*``) cleans them with the rest. Size: about 0.5 KB per technician
ever seen (~170 B of entry JSON, a GEO and a ZSET member, a hash field, with Redis's
overhead), i.e. ~5 MB for 10 000 technicians. Load: ~10 us of Redis time per recorded entry
(one script per ``RECORD_BATCH`` entries); a hub that flushes the newest position of each
technician that moved once a second costs Redis ~1 % of a core per 1 000 technicians.

Atomicity: the conditional writes are Lua scripts, so two hubs racing cannot interleave.
``set_offline`` only deletes a lease its hub holds; ``record_positions`` compares each entry
with the stored one (decoded with cjson: seqs up to 2^53 and times are exact as doubles) and
writes the entry and its GEO position together. Entries are validated in Python first, so a
script never fails half-way (a Lua error does not roll back what it already wrote). A large
batch is split into scripts of ``RECORD_BATCH`` entries so that none blocks Redis for long.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import msgspec

from realtime.backends.redis.client import bounded
from realtime.backends.redis.keys import check_prefix, score
from realtime.backends.redis.scripts import ScriptedClient
from realtime.backends.roster import (
    RosterEntry,
    check_centre,
    check_entries,
    geo_indexed,
)

_entry_decoder = msgspec.json.Decoder(RosterEntry)
_online_decoder = msgspec.json.Decoder(dict[str, str])
_encode = msgspec.json.encode

# Leases expired for longer than this (by the renewing hub's clock) are deleted by renewals.
GC_AFTER_S = 3600.0
# At most this many expired leases are deleted per renewal, so a script stays short.
GC_BATCH = 100
# Entries per record_positions script: ~10 us of Redis time each, so a script blocks Redis for
# at most ~10 ms however large the batch.
RECORD_BATCH = 1000


class RosterKeys:
    """The roster's key names (see the module docstring)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = check_prefix(prefix)
        base = f"{{{prefix}}}:roster"
        self.online = f"{base}:online"
        self.hub = f"{base}:hub"
        self.last = f"{base}:last"
        self.geo = f"{base}:geo"

    @property
    def all(self) -> list[str]:
        return [self.online, self.hub, self.last, self.geo]


# ---------------------------------------------------------------------------------- scripts

# KEYS online, hub; ARGV hub_id, until_t, now ('' = take whoever holds it), gc_before,
# gc_batch, technician ids... Deletes up to gc_batch leases that ended before gc_before first.
_SET_ONLINE = """
local online, hubs = KEYS[1], KEYS[2]
local hub, until_t, now = ARGV[1], ARGV[2], ARGV[3]
local stale = redis.call('ZRANGE', online, '-inf', '(' .. ARGV[4], 'BYSCORE', 'LIMIT', 0, ARGV[5])
for _, id in ipairs(stale) do
  redis.call('ZREM', online, id)
  redis.call('HDEL', hubs, id)
end
local now_n = tonumber(now)
for i = 6, #ARGV do
  local id = ARGV[i]
  local take = true
  if now_n then
    local holder = redis.call('HGET', hubs, id)
    if holder and holder ~= hub then
      local held_until = redis.call('ZSCORE', online, id)
      if held_until and tonumber(held_until) > now_n then
        take = false
      end
    end
  end
  if take then
    redis.call('ZADD', online, until_t, id)
    redis.call('HSET', hubs, id, hub)
  end
end
return 1
"""

# KEYS online, hub; ARGV hub_id, technician id
_SET_OFFLINE = """
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# KEYS online, hub; ARGV now -> JSON object technician -> hub of the leases live at now. One
# string rather than a list: redis-py's pure-Python reply parser takes ~10 us per element,
# so a list of 10 000 leases would cost the hub's event loop ~0.1 s, the JSON ~1 ms.
_ONLINE = """
local ids = redis.call('ZRANGE', KEYS[1], '(' .. ARGV[1], '+inf', 'BYSCORE')
local out = {}
for _, id in ipairs(ids) do
  local hub = redis.call('HGET', KEYS[2], id)
  if hub then
    out[id] = hub
  end
end
if next(out) == nil then
  return '{}'
end
return cjson.encode(out)
"""

# KEYS last, geo; ARGV (technician, t, seq, lon, lat ('' = not indexable), entry JSON)...
_RECORD_POSITIONS = """
local last, geo = KEYS[1], KEYS[2]
local written = 0
for i = 1, #ARGV, 6 do
  local id, t, seq = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local newer = true
  local stored = redis.call('HGET', last, id)
  if stored then
    local old = cjson.decode(stored)
    if t < old.t or (t == old.t and seq <= old.seq) then
      newer = false
    end
  end
  if newer then
    redis.call('HSET', last, id, ARGV[i + 5])
    if ARGV[i + 4] == '' then
      redis.call('ZREM', geo, id)
    else
      redis.call('GEOADD', geo, ARGV[i + 3], ARGV[i + 4], id)
    end
    written = written + 1
  end
end
return written
"""


# KEYS last, geo; ARGV cutoff -> how many entries (and GEO members) older than cutoff went.
# One pass over the hash: ~1 us per technician, ~10 ms for 10 000, every few minutes.
_FORGET_BEFORE = """
local cutoff = tonumber(ARGV[1])
local entries = redis.call('HGETALL', KEYS[1])
local gone = 0
for i = 1, #entries, 2 do
  if cjson.decode(entries[i + 1]).t < cutoff then
    redis.call('HDEL', KEYS[1], entries[i])
    redis.call('ZREM', KEYS[2], entries[i])
    gone = gone + 1
  end
end
return gone
"""


class RedisRoster(ScriptedClient):
    """The Roster protocol on Redis: what every hub of a deployment sees alike."""

    SCRIPTS: ClassVar[Mapping[str, str]] = {
        "set_online": _SET_ONLINE,
        "set_offline": _SET_OFFLINE,
        "online": _ONLINE,
        "record_positions": _RECORD_POSITIONS,
        "forget_before": _FORGET_BEFORE,
    }

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(url)
        self.keys = RosterKeys(prefix)

    # ------------------------------------------------------------------ presence

    @bounded
    async def set_online(
        self,
        hub_id: str,
        technician_ids: Iterable[str],
        until_t: float,
        *,
        now: float | None = None,
    ) -> None:
        ids = list(technician_ids)
        if not ids:
            return
        await self._scripts["set_online"](
            keys=[self.keys.online, self.keys.hub],
            args=[
                hub_id,
                score(until_t),
                "" if now is None else score(now),
                score(until_t - GC_AFTER_S),
                GC_BATCH,
                *ids,
            ],
        )

    @bounded
    async def set_offline(self, hub_id: str, technician_id: str) -> None:
        await self._scripts["set_offline"](
            keys=[self.keys.online, self.keys.hub], args=[hub_id, technician_id]
        )

    @bounded
    async def online(self, now: float) -> dict[str, str]:
        raw = await self._scripts["online"](
            keys=[self.keys.online, self.keys.hub], args=[score(now)]
        )
        return _online_decoder.decode(raw)

    # ------------------------------------------------------------------ positions

    @bounded
    async def record_positions(self, entries: list[RosterEntry]) -> None:
        if not entries:
            return
        check_entries(entries)  # all of them before writing any
        script = self._scripts["record_positions"]
        for start in range(0, len(entries), RECORD_BATCH):
            args: list[Any] = []
            for entry in entries[start : start + RECORD_BATCH]:
                args += [
                    entry.technician_id,
                    score(entry.t),
                    str(entry.seq),
                    score(entry.lon),
                    score(entry.lat) if geo_indexed(entry) else "",
                    _encode(entry),
                ]
            # One script per chunk, in order: each entry is atomic (compare and write, with its
            # GEO position); chunks are not atomic together, which needs no repair: a write
            # only ever replaces an older entry, so a retry after an error is harmless.
            await script(keys=[self.keys.last, self.keys.geo], args=args)

    @bounded
    async def positions(self, technician_ids: Iterable[str]) -> dict[str, RosterEntry]:
        ids = list(dict.fromkeys(technician_ids))
        if not ids:
            return {}
        raws = await self.redis.hmget(self.keys.last, ids)
        return {tid: _entry_decoder.decode(raw) for tid, raw in zip(ids, raws, strict=True) if raw}

    @bounded
    async def near(
        self, lat: float, lon: float, radius_m: float, limit: int
    ) -> list[tuple[str, float]]:
        check_centre(lat, lon)
        if limit <= 0 or radius_m < 0:
            return []
        found = await self.redis.geosearch(
            self.keys.geo,
            longitude=lon,
            latitude=lat,
            radius=radius_m,
            unit="m",
            sort="ASC",
            count=limit,
            withdist=True,
        )
        return [(member.decode(), float(distance)) for member, distance in found]

    # ------------------------------------------------------------------ privacy

    @bounded
    async def forget_positions_before(self, cutoff: float) -> int:
        gone = await self._scripts["forget_before"](
            keys=[self.keys.last, self.keys.geo], args=[score(cutoff)]
        )
        return int(gone)

    @bounded
    async def forget(self, technician_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.last, technician_id)
            pipe.zrem(self.keys.geo, technician_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)
