"""The Lua scripts of the store, and the client that registers a class's scripts on open.

Lua scripts run atomically on the server: they are the "transaction" wherever a write depends
on what is stored (a seq already there, a reporter key taken). Numbers stay strings when
written back: Lua's tostring() would print a 16-digit seq as 1e+15. The key layout they work
on is in ``keys.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import redis.asyncio as aioredis

from realtime.backends.redis.client import open_client

# KEYS fixes, seqs, times, head; ARGV retention_ms (0 = keep all), trim_batch, then
# (seq16, t, fix JSON) triples in the order to store them. A fix goes into the stream, the
# seq set and the time index together, and leaves all three together when trimmed.
APPEND_FIXES = """
local fixes, seqs, times, head = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local retention_ms = tonumber(ARGV[1])
if retention_ms > 0 then
  -- Trim by age: entries whose arrival (the stream id, server time) is older than the
  -- retention, with their index entries, at most trim_batch per call so a script stays short.
  local now = redis.call('TIME')
  local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - retention_ms
  if cutoff > 0 then
    local batch = tonumber(ARGV[2])
    local old = redis.call('XRANGE', fixes, '-', string.format('%d', cutoff - 1), 'COUNT', batch)
    for _, entry in ipairs(old) do
      local seq, data = entry[2][2], entry[2][4]
      redis.call('SREM', seqs, seq)
      redis.call('ZREM', times, seq .. data)
    end
    if #old > 0 then
      local minid = string.format('%d', cutoff)
      if #old == batch then
        local ms, n = string.match(old[#old][1], '^(%d+)-(%d+)$')
        minid = ms .. '-' .. string.format('%d', tonumber(n) + 1)
      end
      redis.call('XTRIM', fixes, 'MINID', minid)
    end
  end
end
local highest = tonumber(redis.call('HGET', head, 'seq') or '-1')
local last_t = redis.call('HGET', head, 'last_t')
local last_seq = redis.call('HGET', head, 'last_seq')
if last_t then
  last_t = tonumber(last_t)
  last_seq = tonumber(last_seq)
end
local added = 0
for i = 3, #ARGV, 3 do
  local seq, t, data = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('SADD', seqs, seq) == 1 then
    redis.call('XADD', fixes, '*', 's', seq, 'f', data)
    redis.call('ZADD', times, t, seq .. data)
    added = added + 1
    local n, tn = tonumber(seq), tonumber(t)
    if n > highest then
      highest = n
      redis.call('HSET', head, 'seq', seq)
    end
    if not last_t or tn > last_t or (tn == last_t and n > last_seq) then
      last_t, last_seq = tn, n
      redis.call('HSET', head, 'last_t', t, 'last_seq', seq, 'last', data)
    end
  end
end
if retention_ms > 0 then
  -- A technician who stops sending is never trimmed by an append again: let the history
  -- expire once its newest entry is past the retention (head stays).
  for _, key in ipairs({fixes, seqs, times}) do
    redis.call('PEXPIRE', key, retention_ms)
  end
end
return added
"""

# KEYS index (SET or ZSET), data HASH; ARGV 'set' | 'zset' -> the indexed values, in the
# index's order for a ZSET. One script so the index and the values are one snapshot.
INDEXED_VALUES = """
local ids
if ARGV[1] == 'zset' then
  ids = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  ids = redis.call('SMEMBERS', KEYS[1])
end
local out = {}
for _, id in ipairs(ids) do
  local value = redis.call('HGET', KEYS[2], id)
  if value then
    out[#out + 1] = value
  end
end
return out
"""

# KEYS incidents, open, by_reporter, audit; ARGV id, reporter_key, data, open (1/0),
# updated_t, audit JSONs... Mirrors SQLite's INSERT .. ON CONFLICT (id) DO UPDATE with a
# UNIQUE reporter_key: a new incident claims its key (or fails, writing nothing); an existing
# one keeps the key it was stored with.
SAVE_INCIDENT = """
local id, key = ARGV[1], ARGV[2]
local exists = redis.call('HEXISTS', KEYS[1], id) == 1
if not exists then
  local owner = redis.call('HGET', KEYS[3], key)
  if owner and owner ~= id then
    return redis.error_reply('DUPLICATE_REPORTER_KEY ' .. owner)
  end
  redis.call('HSET', KEYS[3], key, id)
end
redis.call('HSET', KEYS[1], id, ARGV[3])
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[2], ARGV[5], id)
else
  redis.call('ZREM', KEYS[2], id)
end
for i = 6, #ARGV do
  redis.call('XADD', KEYS[4], '*', 'd', ARGV[i])
end
return 1
"""

# KEYS alerts, alerts_t, open, audit; ARGV id, data, open (1/0), t, audit JSONs...
# SQLite keeps an alert's t from its first insert (the upsert does not update it), and open
# alerts are ordered by it; alerts_t remembers it the same way.
SAVE_ALERT = """
local id = ARGV[1]
redis.call('HSETNX', KEYS[2], id, ARGV[4])
redis.call('HSET', KEYS[1], id, ARGV[2])
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[3], redis.call('HGET', KEYS[2], id), id)
else
  redis.call('ZREM', KEYS[3], id)
end
for i = 5, #ARGV do
  redis.call('XADD', KEYS[4], '*', 'd', ARGV[i])
end
return 1
"""

# KEYS seen, stream; ARGV payload, seen_ttl_s. Marking "seen" and adding the entry are one
# step: a hub that dies in between can neither lose the work nor let another hub add it twice.
ENQUEUE_WORK = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('XADD', KEYS[2], '*', 'p', ARGV[1])
  return 1
end
return 0
"""

# KEYS stream; ARGV group, consumer, entry id. Reset the idle time of an entry this consumer
# holds (XCLAIM to itself, JUSTID: no delivery count change, no payload), never taking one
# another consumer holds now: check and claim atomically.
KEEP_WORK = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #pending == 0 then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""

# KEYS lease; ARGV holder, ttl_ms. Take a free lease or renew our own, atomically.
HOLD_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS fixes, seqs, times, head; ARGV cutoff, batch. Retention: up to batch fixes whose time
# is before cutoff leave the time index and the seq set (what track and appends read); their
# stream entries, and any other entry at the head of the stream older than cutoff, go too.
# Fixes arrive roughly in time order, so the old ones are at the head; one that arrived late
# behind newer ones is not found here but is trimmed by arrival age (MINID) on the next
# append, or expires with the keys. The newest fix in head goes once it is past the cutoff;
# the highest seq stays (resume). Returns how many fixes left the time index.
PURGE_FIXES = """
local fixes, seqs, times, head = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cutoff, batch = tonumber(ARGV[1]), tonumber(ARGV[2])
local old = redis.call('ZRANGE', times, '-inf', '(' .. ARGV[1], 'BYSCORE', 'LIMIT', 0, batch)
local gone = {}
for _, member in ipairs(old) do
  local seq = string.sub(member, 1, 16)
  redis.call('SREM', seqs, seq)
  redis.call('ZREM', times, member)
  gone[seq] = true
end
local entries = redis.call('XRANGE', fixes, '-', '+', 'COUNT', batch)
for _, entry in ipairs(entries) do
  local seq, data = entry[2][2], entry[2][4]
  local t = cjson.decode(data)[3]
  if gone[seq] or t < cutoff then
    if not gone[seq] then
      redis.call('SREM', seqs, seq)
      redis.call('ZREM', times, seq .. data)
    end
    redis.call('XDEL', fixes, entry[1])
  else
    break
  end
end
local last_t = redis.call('HGET', head, 'last_t')
if last_t and tonumber(last_t) < cutoff then
  redis.call('HDEL', head, 'last', 'last_t', 'last_seq')
end
return #old
"""

# KEYS fixes, seqs, times, head. Erasure: the whole history and the newest fix; the highest
# seq stays (a resent old seq is not stored again). Returns how many fixes there were.
ERASE_FIXES = """
local n = redis.call('ZCARD', KEYS[3])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('HDEL', KEYS[4], 'last', 'last_t', 'last_seq')
return n
"""

# KEYS incidents, open, by_reporter, audit; ARGV id, cutoff, reporter keys pointing at it...
# Deletes a closed incident last updated before cutoff, re-checked here so that one changed
# since it was read is left alone. Returns 1 when deleted.
PURGE_INCIDENT = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return 0
end
local incident = cjson.decode(raw)
if (incident.status ~= 'resolved' and incident.status ~= 'cancelled')
    or incident.updated_t >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[4])
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[3], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[3], ARGV[i])
  end
end
return 1
"""

# KEYS alerts, alerts_t, open, audit; ARGV id, cutoff. Re-checked in the script: an alert
# is deleted only if it is still closed, and closed before the cutoff, when the script runs.
PURGE_ALERT = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return 0
end
local alert = cjson.decode(raw)
local closed_t = alert.acked_t or alert.t
if alert.status == 'open' or closed_t >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
return 1
"""


class ScriptedClient:
    """One redis.asyncio client with its Lua scripts, from ``open()`` to ``close()``.

    The store and the roster are both this: a subclass names its scripts in ``SCRIPTS``.
    """

    SCRIPTS: ClassVar[Mapping[str, str]] = {}

    def __init__(self, url: str) -> None:
        self.url = url
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError(f"{type(self).__name__} is not open")
        return self._redis

    async def open(self) -> None:
        client = self._redis = await open_client(self.url)
        self._scripts = {name: client.register_script(s) for name, s in self.SCRIPTS.items()}

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
