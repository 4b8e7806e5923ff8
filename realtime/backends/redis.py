"""Redis backend: the same Bus and Store as the embedded one, shared by several hubs.

Uses redis-py's ``redis.asyncio`` (the old ``aioredis`` was merged into it and does not import
on Python 3.11). ``RedisBus`` is the live fan-out (pub/sub), ``RedisStore`` everything durable;
both are drop-in replacements for ``MemoryBus`` and ``SQLiteStore`` and pass the same contract
tests (``tests/realtime/backends/test_contract.py``).

Key layout (``p`` is ``DOORSTEP_REDIS_PREFIX``, ``doorstep`` by default)::

    {p}:bookings                  HASH   booking id -> Booking JSON
    {p}:bookings:active           SET    ids of active bookings
    {p}:booking-audit:<id>        STREAM one entry per AuditEvent, field d = JSON
    {p}:incidents                 HASH   incident id -> Incident JSON
    {p}:incidents:open            ZSET   open/acknowledged ids, score updated_t
    {p}:incidents:by-reporter     HASH   reporter key -> incident id (the unique index)
    {p}:incident-audit:<id>       STREAM AuditEntry JSON
    {p}:alerts                    HASH   alert id -> SafetyAlert JSON
    {p}:alerts:t                  HASH   alert id -> t as first stored (the order of open alerts)
    {p}:alerts:open               ZSET   open ids, score t
    {p}:alert-audit:<id>          STREAM AuditEntry JSON
    {p}:doc:<namespace>           HASH   key -> document bytes
    {p}:lock:<name>               STRING a named lock (redis-py's Lock: token, expiry)
    {p}:lease:<name>              STRING the holder of a lease, with its expiry
    {p}:work:<queue>              STREAM durable work, consumer group ``hubs``; each hub reads
                                         as its own consumer and XAUTOCLAIMs entries a dead
                                         hub left pending
    {p}:work-seen:<queue>:<key>   STRING "this work was enqueued once" (expires after a week)
    {p}:access:<subject>          STREAM the access audit of one person (AccessEntry JSON)
    {p:tech:<id>}:fixes           STREAM the technician's location history, in arrival order
                                         (trimmed by age with MINID); fields s = seq as 16
                                         digits, f = StoredFix JSON
    {p:tech:<id>}:seqs            SET    seqs stored (16 digits): makes appends idempotent
    {p:tech:<id>}:times           ZSET   score t, member seq (16 digits) + StoredFix JSON: the
                                         time index, so ``track`` is one ZRANGE BYSCORE whose
                                         order (score, then member) is exactly (t, seq)
    {p:tech:<id>}:head            HASH   seq = highest seq, last = newest fix by (t, seq)

    pub/sub channel  <p>:bus:<channel>   msgpack [origin, BusMessage]
    {p}:durable:<channel>         STREAM a durable channel's messages (field m = the same
                                         msgpack), capped at ~10,000 entries; every hub reads
                                         it from where it left off

Why these hash tags: Redis Cluster only runs a MULTI/EXEC or a script when all its keys are in
one slot, and the slot is computed from the part of the key inside the first ``{...}``. Every
atomic write here touches either the control plane (an entity, its index and its audit
stream) or one technician's history, never both, so there are two kinds of tag:

* ``{p}`` for bookings, incidents, alerts and documents. One slot means one cluster node holds
  the whole control plane, which is what lets "write the incident, claim its reporter key,
  update the open index, append the audit" be one script, as it is one SQLite transaction.
  It is a few writes per visit, orders of magnitude below what one node serves.
* ``{p:tech:<id>}`` for a technician's four history keys. Fixes are ~99% of all writes, so
  they are spread over the cluster by technician, and one technician's batch stays atomic.

Ids come last in a key after a fixed kind (``booking-audit:<id>``), so an id containing ``:``
can never make two keys collide. Channels carry no tag: classic pub/sub is broadcast to every
cluster node whatever the name, and sharded pub/sub (SPUBLISH) would want them spread anyway.

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
import contextlib
import functools
import logging
import random
import re
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, ClassVar, ParamSpec, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    LockError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from alerts.incident import AuditEntry, Incident, IncidentStatus
from alerts.safety_alert import AlertStatus, SafetyAlert
from realtime.backends.base import (
    BusMessage,
    DuplicateReporterKey,
    LockUnavailable,
    Resync,
    StoredFix,
    Subscriber,
    Unsubscribe,
    WorkItem,
    register_store_errors,
)
from realtime.booking import AuditEvent, Booking
from realtime.privacy import AccessEntry, booking_due, involves
from realtime.tasks import Supervisor, stop_tasks

log = logging.getLogger("doorstep.redis")

# A prefix becomes part of a hash tag and of SCAN patterns, so it must not contain braces or
# glob characters, nor ":" (``{a:tech:*`` must never match the keys of a prefix "a:tech:b").
# The same rule is enforced on DOORSTEP_REDIS_PREFIX.
PREFIX_PATTERN = r"^[A-Za-z0-9_.-]+$"

# A command that gets no answer within this long fails instead of stalling the hub: a store
# write is retried by its caller (the history writer) or reported (an HTTP 5xx), both better
# than a request that hangs through a network partition. It is applied with asyncio.timeout
# around each call, not as redis-py's socket_timeout: that one goes through asyncio.wait_for,
# which on Python 3.11 can swallow a cancellation, and a hub task cancelled at shutdown while
# it writes would then never end.
COMMAND_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
# No automatic retries of commands: if a MULTI/EXEC's reply is lost, redis-py would send it
# again and append the audit entries twice. An error means "maybe written", as with any
# database; the callers that retry (history writer) are idempotent.
_NO_RETRY = Retry(NoBackoff(), 0)

_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
# What the HTTP layer answers 503 for: Redis away, loading, read-only (a failover), or out of
# memory under ``maxmemory`` + ``noeviction`` (``store_full``).
register_store_errors(
    unavailable=(*_CONNECTION_ERRORS, BusyLoadingError, ReadOnlyError),
    full=(OutOfMemoryError,),
)

_booking_decoder = msgspec.json.Decoder(Booking)
_event_decoder = msgspec.json.Decoder(AuditEvent)
_incident_decoder = msgspec.json.Decoder(Incident)
_audit_entry_decoder = msgspec.json.Decoder(AuditEntry)
_alert_decoder = msgspec.json.Decoder(SafetyAlert)
_fix_decoder = msgspec.json.Decoder(StoredFix)
_access_decoder = msgspec.json.Decoder(AccessEntry)
_encode = msgspec.json.encode

_OPEN_INCIDENT = frozenset({IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED})


def check_prefix(prefix: str) -> str:
    if not re.match(PREFIX_PATTERN, prefix):
        raise ValueError(f"Redis key prefix {prefix!r} must match {PREFIX_PATTERN}")
    return prefix


MAX_SEQ = 2**53 - 1  # the wire protocol's highest seq (realtime.protocol.MAX_SEQ)
_SEQ_DIGITS = len(str(MAX_SEQ))  # 16


def _seq_key(seq: int) -> str:
    """A seq as 16 digits: equal-t members of the time index then sort by seq, exactly
    SQLite's ``ORDER BY t, seq``."""
    return f"{seq:0{_SEQ_DIGITS}d}"


def _score(value: float) -> str:
    # repr() round-trips a float exactly (and gives inf/-inf, which Redis parses).
    return repr(float(value))


class Keys:
    """Every key name in one place (see the module docstring for the layout)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = check_prefix(prefix)
        core = f"{{{prefix}}}"
        self.bookings = f"{core}:bookings"
        self.bookings_active = f"{core}:bookings:active"
        self.incidents = f"{core}:incidents"
        self.incidents_open = f"{core}:incidents:open"
        self.incidents_by_reporter = f"{core}:incidents:by-reporter"
        self.alerts = f"{core}:alerts"
        self.alerts_t = f"{core}:alerts:t"
        self.alerts_open = f"{core}:alerts:open"
        self._core = core

    def booking_audit(self, booking_id: str) -> str:
        return f"{self._core}:booking-audit:{booking_id}"

    def incident_audit(self, incident_id: str) -> str:
        return f"{self._core}:incident-audit:{incident_id}"

    def alert_audit(self, alert_id: str) -> str:
        return f"{self._core}:alert-audit:{alert_id}"

    def documents(self, namespace: str) -> str:
        return f"{self._core}:doc:{namespace}"

    def lock(self, name: str) -> str:
        return f"{self._core}:lock:{name}"

    def lease(self, name: str) -> str:
        return f"{self._core}:lease:{name}"

    def work(self, queue: str) -> str:
        return f"{self._core}:work:{queue}"

    def work_seen(self, queue: str, dedupe_key: str) -> str:
        return f"{self._core}:work-seen:{queue}:{dedupe_key}"

    def access(self, subject: str) -> str:
        return f"{self._core}:access:{subject}"

    @property
    def technician_pattern(self) -> str:
        """SCAN pattern of every technician's history keys (the id is inside the tag)."""
        return f"{{{self.prefix}:tech:*"

    def technician_of(self, key: str) -> str | None:
        """The technician id in one of its history key names, None for another key."""
        head = f"{{{self.prefix}:tech:"
        if not key.startswith(head) or "}:" not in key:
            return None
        return key[len(head) : key.rindex("}:")]

    def durable(self, channel: str) -> str:
        return f"{self._core}:durable:{channel}"

    def technician(self, technician_id: str) -> list[str]:
        """fixes, seqs, times, head: the order the history scripts take them in."""
        tag = f"{{{self.prefix}:tech:{technician_id}}}"
        return [f"{tag}:fixes", f"{tag}:seqs", f"{tag}:times", f"{tag}:head"]

    def channel(self, channel: str) -> str:
        return f"{self.prefix}:bus:{channel}"

    @property
    def patterns(self) -> list[str]:
        """SCAN patterns matching every key of this prefix (tests use them to clean up)."""
        return [f"{{{self.prefix}}}:*", f"{{{self.prefix}:tech:*"]


# ---------------------------------------------------------------------------------- scripts
# Lua scripts run atomically on the server: they are the "transaction" wherever a write
# depends on what is stored (a seq already there, a reporter key taken). Numbers stay strings
# when written back: Lua's tostring() would print a 16-digit seq as 1e+15.

# KEYS fixes, seqs, times, head; ARGV retention_ms (0 = keep all), trim_batch, then
# (seq16, t, fix JSON) triples in the order to store them. A fix goes into the stream, the
# seq set and the time index together, and leaves all three together when trimmed.
_APPEND_FIXES = """
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
_INDEXED_VALUES = """
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
_SAVE_INCIDENT = """
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
_SAVE_ALERT = """
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
_ENQUEUE_WORK = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('XADD', KEYS[2], '*', 'p', ARGV[1])
  return 1
end
return 0
"""

# KEYS stream; ARGV group, consumer, entry id. Reset the idle time of an entry this consumer
# holds (XCLAIM to itself, JUSTID: no delivery count change, no payload), never taking one
# another consumer holds now: check and claim atomically.
_KEEP_WORK = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #pending == 0 then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""

# KEYS lease; ARGV holder, ttl_ms. Take a free lease or renew our own, atomically.
_HOLD_LEASE = """
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
_PURGE_FIXES = """
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
_ERASE_FIXES = """
local n = redis.call('ZCARD', KEYS[3])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('HDEL', KEYS[4], 'last', 'last_t', 'last_seq')
return n
"""

# KEYS incidents, open, by_reporter, audit; ARGV id, cutoff, reporter keys pointing at it...
# Deletes a closed incident last updated before cutoff, re-checked here so that one changed
# since it was read is left alone. Returns 1 when deleted.
_PURGE_INCIDENT = """
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
_PURGE_ALERT = """
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

WORK_GROUP = "hubs"
# How long "this work was enqueued" is remembered: far longer than any incident stays open.
WORK_SEEN_TTL_S = 7 * 24 * 3600
# How long a lock() waits for a lock another hub holds before giving up (LockUnavailable).
LOCK_WAIT_S = 5.0


def _client(url: str, **options: Any) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url, retry=_NO_RETRY, socket_connect_timeout=CONNECT_TIMEOUT_S, **options
    )


async def open_client(url: str, **options: Any) -> aioredis.Redis:
    """A client that has answered a PING: a wrong URL fails at start-up, not on first use."""
    client = _client(url, **options)
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client


P = ParamSpec("P")
R = TypeVar("R")


def _bounded(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Fail a store call after COMMAND_TIMEOUT_S (see there for why not socket_timeout)."""

    @functools.wraps(method)
    async def bounded(*args: P.args, **kwargs: P.kwargs) -> R:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            return await method(*args, **kwargs)

    return bounded


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


async def delete_all(url: str, prefix: str) -> int:
    """Delete every key of a prefix; returns how many. For tests and for retiring a deployment.

    SCAN, never FLUSHALL/FLUSHDB: other prefixes (deployments, parallel test runs) may share
    the same Redis and database.
    """
    client = _client(url)
    deleted = 0
    try:
        for pattern in Keys(prefix).patterns:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await client.delete(*batch)
                    batch = []
            if batch:
                deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted


# ------------------------------------------------------------------------------------ store


class RedisStore(ScriptedClient):
    """The Store protocol on Redis (layout and atomicity: see the module docstring)."""

    SCRIPTS: ClassVar[Mapping[str, str]] = {
        "append_fixes": _APPEND_FIXES,
        "indexed_values": _INDEXED_VALUES,
        "save_incident": _SAVE_INCIDENT,
        "save_alert": _SAVE_ALERT,
        "enqueue_work": _ENQUEUE_WORK,
        "keep_work": _KEEP_WORK,
        "hold_lease": _HOLD_LEASE,
        "purge_fixes": _PURGE_FIXES,
        "erase_fixes": _ERASE_FIXES,
        "purge_incident": _PURGE_INCIDENT,
        "purge_alert": _PURGE_ALERT,
    }

    # Entries trimmed per append at most, so a script never blocks Redis for long (e.g. right
    # after the retention was shortened); the rest goes with the following appends.
    TRIM_BATCH = 1000

    def __init__(self, url: str, prefix: str, *, history_retention_s: float | None) -> None:
        super().__init__(url)
        self.keys = Keys(prefix)
        self.history_retention_s = history_retention_s
        self._groups: set[str] = set()  # work streams whose consumer group exists

    @_bounded
    async def ping(self) -> None:
        await self.redis.ping()

    async def _indexed_values(self, index: str, data: str, kind: str) -> list[bytes]:
        return await self._scripts["indexed_values"](keys=[index, data], args=[kind])

    # ------------------------------------------------------------------ bookings

    @_bounded
    async def save_booking(self, booking: Booking, events: list[AuditEvent]) -> None:
        keys = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            # MULTI/EXEC: the booking, its place in the active index and its audit entries
            # become visible together, as in SQLite's transaction.
            pipe.hset(keys.bookings, booking.id, _encode(booking))
            if booking.active:
                pipe.sadd(keys.bookings_active, booking.id)
            else:
                pipe.srem(keys.bookings_active, booking.id)
            for event in events:
                pipe.xadd(keys.booking_audit(booking.id), {"d": _encode(event)})
            await pipe.execute()

    @_bounded
    async def get_booking(self, booking_id: str) -> Booking | None:
        raw = await self.redis.hget(self.keys.bookings, booking_id)
        return _booking_decoder.decode(raw) if raw is not None else None

    @_bounded
    async def active_bookings(self) -> list[Booking]:
        raws = await self._indexed_values(self.keys.bookings_active, self.keys.bookings, "set")
        return [_booking_decoder.decode(raw) for raw in raws]

    @_bounded
    async def booking_events(self, booking_id: str) -> list[AuditEvent]:
        entries = await self.redis.xrange(self.keys.booking_audit(booking_id))
        return [_event_decoder.decode(fields[b"d"]) for _, fields in entries]

    # ------------------------------------------------------------------ location history

    @_bounded
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
                args += [_seq_key(fix.seq), _score(fix.t), _encode(fix)]
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

    @_bounded
    async def track(
        self, technician_id: str, t_from: float, t_to: float, limit: int
    ) -> list[StoredFix]:
        if limit == 0:
            return []
        members = await self.redis.zrange(
            self.keys.technician(technician_id)[2],
            _score(t_from),
            _score(t_to),
            byscore=True,
            offset=0,
            num=limit,  # negative: no limit, as in SQLite
        )
        return [_fix_decoder.decode(member[_SEQ_DIGITS:]) for member in members]

    @_bounded
    async def highest_seq(self, technician_id: str) -> int:
        raw = await self.redis.hget(self.keys.technician(technician_id)[3], "seq")
        return -1 if raw is None else int(raw)

    @_bounded
    async def last_fix(self, technician_id: str) -> StoredFix | None:
        raw = await self.redis.hget(self.keys.technician(technician_id)[3], "last")
        return None if raw is None else _fix_decoder.decode(raw)

    # ------------------------------------------------------------------ incidents

    @_bounded
    async def save_incident(
        self, incident: Incident, reporter_key: str, audit: list[AuditEntry]
    ) -> None:
        keys = self.keys
        try:
            await self._scripts["save_incident"](
                keys=[
                    keys.incidents,
                    keys.incidents_open,
                    keys.incidents_by_reporter,
                    keys.incident_audit(incident.id),
                ],
                args=[
                    incident.id,
                    reporter_key,
                    _encode(incident),
                    "1" if incident.status in _OPEN_INCIDENT else "0",
                    _score(incident.updated_t),
                    *(_encode(entry) for entry in audit),
                ],
            )
        except ResponseError as exc:
            if str(exc).startswith("DUPLICATE_REPORTER_KEY"):
                owner = str(exc).split(" ", 1)[1]
                raise DuplicateReporterKey(reporter_key, owner) from None
            raise

    @_bounded
    async def get_incident(self, incident_id: str) -> Incident | None:
        raw = await self.redis.hget(self.keys.incidents, incident_id)
        return _incident_decoder.decode(raw) if raw is not None else None

    @_bounded
    async def incident_by_reporter_key(self, reporter_key: str) -> Incident | None:
        incident_id = await self.redis.hget(self.keys.incidents_by_reporter, reporter_key)
        if incident_id is None:
            return None
        # Two reads, but a reporter key never moves to another incident, so the second one
        # cannot see a different incident than the first pointed at.
        return await self.get_incident(incident_id.decode())

    @_bounded
    async def open_incidents(self) -> list[Incident]:
        raws = await self._indexed_values(self.keys.incidents_open, self.keys.incidents, "zset")
        return [_incident_decoder.decode(raw) for raw in raws]

    @_bounded
    async def incident_audit(self, incident_id: str) -> list[AuditEntry]:
        return await self._audit(self.keys.incident_audit(incident_id))

    async def _audit(self, key: str) -> list[AuditEntry]:
        entries = await self.redis.xrange(key)
        return [_audit_entry_decoder.decode(fields[b"d"]) for _, fields in entries]

    # ------------------------------------------------------------------ safety alerts

    @_bounded
    async def save_alert(self, alert: SafetyAlert, audit: list[AuditEntry]) -> None:
        keys = self.keys
        await self._scripts["save_alert"](
            keys=[keys.alerts, keys.alerts_t, keys.alerts_open, keys.alert_audit(alert.id)],
            args=[
                alert.id,
                _encode(alert),
                "1" if alert.status is AlertStatus.OPEN else "0",
                _score(alert.t),
                *(_encode(entry) for entry in audit),
            ],
        )

    @_bounded
    async def get_alert(self, alert_id: str) -> SafetyAlert | None:
        raw = await self.redis.hget(self.keys.alerts, alert_id)
        return _alert_decoder.decode(raw) if raw is not None else None

    @_bounded
    async def open_alerts(self) -> list[SafetyAlert]:
        raws = await self._indexed_values(self.keys.alerts_open, self.keys.alerts, "zset")
        return [_alert_decoder.decode(raw) for raw in raws]

    @_bounded
    async def alert_audit(self, alert_id: str) -> list[AuditEntry]:
        return await self._audit(self.keys.alert_audit(alert_id))

    # ------------------------------------------------------------------ documents

    @_bounded
    async def put_document(self, namespace: str, key: str, data: bytes) -> None:
        await self.redis.hset(self.keys.documents(namespace), key, data)

    @_bounded
    async def get_document(self, namespace: str, key: str) -> bytes | None:
        return await self.redis.hget(self.keys.documents(namespace), key)

    @_bounded
    async def delete_document(self, namespace: str, key: str) -> bool:
        return bool(await self.redis.hdel(self.keys.documents(namespace), key))

    @_bounded
    async def list_documents(self, namespace: str) -> dict[str, bytes]:
        raw = await self.redis.hgetall(self.keys.documents(namespace))
        return {k.decode(): raw[k] for k in sorted(raw)}

    # ------------------------------------------------------------------ privacy
    # Retention and erasure. Bookings and incidents have no time index, so the job scans
    # their hashes (HSCAN, in pages); it runs every few minutes and touches a few keys.

    SCAN_COUNT = 500

    async def _technician_ids(self) -> list[str]:
        ids: set[str] = set()
        async for key in self.redis.scan_iter(
            match=self.keys.technician_pattern, count=self.SCAN_COUNT
        ):
            technician_id = self.keys.technician_of(key.decode())
            if technician_id is not None:
                ids.add(technician_id)
        return sorted(ids)

    async def _hash_values(self, key: str) -> AsyncIterator[tuple[bytes, bytes]]:
        async for field, value in self.redis.hscan_iter(key, count=self.SCAN_COUNT):
            yield field, value

    async def purge_fixes_before(self, cutoff: float) -> int:
        total = 0
        for technician_id in await self._technician_ids():
            while True:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    removed = await self._scripts["purge_fixes"](
                        keys=self.keys.technician(technician_id),
                        args=[_score(cutoff), self.TRIM_BATCH],
                    )
                total += int(removed)
                if int(removed) < self.TRIM_BATCH:
                    break
        return total

    @_bounded
    async def erase_fixes(self, technician_id: str) -> int:
        erased = await self._scripts["erase_fixes"](keys=self.keys.technician(technician_id))
        return int(erased)

    async def purge_closed_incidents_before(self, cutoff: float) -> int:
        due: list[str] = []
        async for field, raw in self._hash_values(self.keys.incidents):
            incident = _incident_decoder.decode(raw)
            if incident.status not in _OPEN_INCIDENT and incident.updated_t < cutoff:
                due.append(field.decode())
        if not due:
            return 0
        wanted = set(due)
        reporter_keys: defaultdict[str, list[str]] = defaultdict(list)
        async for key, owner in self._hash_values(self.keys.incidents_by_reporter):
            if owner.decode() in wanted:
                reporter_keys[owner.decode()].append(key.decode())
        purged = 0
        keys = self.keys
        for incident_id in due:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                purged += await self._scripts["purge_incident"](
                    keys=[
                        keys.incidents,
                        keys.incidents_open,
                        keys.incidents_by_reporter,
                        keys.incident_audit(incident_id),
                    ],
                    args=[incident_id, _score(cutoff), *reporter_keys[incident_id]],
                )
        return purged

    async def purge_closed_alerts_before(self, cutoff: float) -> int:
        due = []
        async for field, raw in self._hash_values(self.keys.alerts):
            alert = _alert_decoder.decode(raw)
            closed_t = alert.acked_t if alert.acked_t is not None else alert.t
            if not alert.is_open and closed_t < cutoff:
                due.append(field.decode())
        purged = 0
        keys = self.keys
        for alert_id in due:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                purged += await self._scripts["purge_alert"](
                    keys=[keys.alerts, keys.alerts_t, keys.alerts_open, keys.alert_audit(alert_id)],
                    args=[alert_id, _score(cutoff)],
                )
        return purged

    async def closed_bookings_before(self, cutoff: float, limit: int) -> list[Booking]:
        found = []
        async for _, raw in self._hash_values(self.keys.bookings):
            booking = _booking_decoder.decode(raw)
            if booking_due(booking, cutoff):
                found.append(booking)
        found.sort(key=lambda b: (b.updated_t, b.id))
        return found[: max(0, limit)]

    async def bookings_of(self, role: str, person_id: str) -> list[Booking]:
        found = []
        async for _, raw in self._hash_values(self.keys.bookings):
            booking = _booking_decoder.decode(raw)
            person = booking.technician_id if role == "technician" else booking.customer_id
            if person == person_id:
                found.append(booking)
        return sorted(found, key=lambda b: b.id)

    async def incidents_about(self, person_id: str) -> list[Incident]:
        found = []
        async for _, raw in self._hash_values(self.keys.incidents):
            incident = _incident_decoder.decode(raw)
            if involves(incident, person_id):
                found.append(incident)
        return sorted(found, key=lambda i: (i.created_t, i.id))

    @_bounded
    async def append_access(self, entry: AccessEntry) -> None:
        await self.redis.xadd(self.keys.access(entry.subject), {"d": _encode(entry)})

    @_bounded
    async def access_log(self, subject: str, limit: int) -> list[AccessEntry]:
        entries = await self.redis.xrevrange(self.keys.access(subject), count=limit)
        return [_access_decoder.decode(fields[b"d"]) for _, fields in reversed(entries)]

    async def purge_access_before(self, cutoff: float) -> int:
        purged = 0
        async for key in self.redis.scan_iter(match=self.keys.access("*"), count=self.SCAN_COUNT):
            # Entries are appended in time order: delete from the head while they are old.
            while True:
                entries = await self.redis.xrange(key, count=self.SCAN_COUNT)
                old = [i for i, f in entries if _access_decoder.decode(f[b"d"]).t < cutoff]
                if old:
                    purged += await self.redis.xdel(key, *old)
                if len(old) < self.SCAN_COUNT:
                    break
        return purged

    # -------------------------------------------------------------------------------------- bus

    # ------------------------------------------------------------------ coordination

    @asynccontextmanager
    async def lock(self, name: str, ttl_s: float) -> AsyncIterator[None]:
        """redis-py's Lock (SET NX PX with a token, released by a script that checks it)."""
        lock = self.redis.lock(
            self.keys.lock(name), timeout=ttl_s, blocking_timeout=LOCK_WAIT_S, sleep=0.02
        )
        try:
            async with asyncio.timeout(LOCK_WAIT_S + COMMAND_TIMEOUT_S):
                acquired = await lock.acquire()
        except (*_CONNECTION_ERRORS, TimeoutError, LockError) as exc:
            raise LockUnavailable(f"lock {name!r}: {exc}") from exc
        if not acquired:
            raise LockUnavailable(f"lock {name!r} is held by another hub")
        try:
            yield
        finally:
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    await lock.release()
            except (*_CONNECTION_ERRORS, TimeoutError, LockError) as exc:
                # Expired (held past ttl_s) or Redis away: it expires by itself either way.
                log.warning("lock %s not released cleanly: %s", name, exc)

    @_bounded
    async def hold_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        granted = await self._scripts["hold_lease"](
            keys=[self.keys.lease(name)], args=[holder, max(1, int(ttl_s * 1000))]
        )
        return bool(granted)

    @_bounded
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

    @_bounded
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

    @_bounded
    async def keep_work(self, queue: str, consumer: str, item_id: str, now: float) -> bool:
        """``now`` is unused: Redis resets the idle time on its own clock."""
        kept = await self._scripts["keep_work"](
            keys=[self.keys.work(queue)], args=[WORK_GROUP, consumer, item_id]
        )
        return bool(kept)

    @_bounded
    async def ack_work(self, queue: str, item_id: str) -> None:
        stream = self.keys.work(queue)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, WORK_GROUP, item_id)
            pipe.xdel(stream, item_id)
            await pipe.execute()


class _Envelope(msgspec.Struct, array_like=True):
    """What travels on a Redis channel: the message and which bus sent it."""

    origin: str
    message: BusMessage


_envelope_decoder = msgspec.msgpack.Decoder(_Envelope)


class RedisBus:
    """The Bus protocol over Redis pub/sub, so that hubs sharing a Redis see each other.

    ``publish`` delivers to this bus's own subscribers at once, synchronously, exactly like
    ``MemoryBus`` (a hub's own watchers never wait for a Redis round trip, and keep working
    while Redis is away), then queues the message for Redis; the reader drops messages that
    come back from its own ``origin``, so every subscriber sees each message once.

    One pub/sub connection per bus, whatever the number of local subscribers: a channel is
    subscribed on Redis while it has at least one local subscriber. A reader task dispatches
    arriving messages to the local subscribers synchronously (they only enqueue into bounded
    outboxes), a writer task sends queued publishes in pipelined batches. When Redis drops,
    both reconnect with exponential backoff and the reader resubscribes to every channel that
    still has local subscribers. Delivery between hubs is at most once, like pub/sub itself:
    what must not be lost belongs in the store (streams), not on the bus.

    Except on the ``durable_channels`` (the operators' channel: incidents and alerts): their
    messages go into a stream per channel instead of pub/sub, publishes that fail are
    retried rather than dropped, and each hub reads the stream from the last entry it saw,
    so a hub whose connection to Redis blinks still hands every incident to its consoles
    (at least once: a retried send may repeat one, and consoles key them by id).
    """

    # Publishes waiting for Redis. Bounded because a Redis outage must not grow the hub's
    # memory: past it the oldest are dropped (live positions are worthless once stale, and a
    # watcher recovers from the snapshot on reconnect), counted in ``dropped``.
    MAX_PENDING = 10_000
    # Reconnect backoff: first retry soon (a Redis restart takes ~1 s), then doubling, with
    # jitter so several hubs do not reconnect in lockstep.
    BACKOFF_MIN_S = 0.05
    BACKOFF_MAX_S = 5.0
    # The pub/sub connection pings when idle for this long, and is declared dead (then
    # reconnected) after three times as long without hearing anything: a silently dropped TCP
    # connection would otherwise leave the hub deaf until the kernel gives up, minutes later.
    PING_INTERVAL_S = 5.0
    # Durable channel streams keep about this many entries (XADD MAXLEN ~): minutes of
    # operator traffic, far more than a reconnect takes.
    DURABLE_MAXLEN = 10_000
    # A hub starts reading a durable channel this far back from when it subscribed (Redis's
    # clock and the hub's may differ a little; an entry seen twice is harmless).
    DURABLE_LOOKBACK_S = 2.0

    def __init__(
        self,
        url: str,
        prefix: str,
        durable_channels: Iterable[str] = (),
        tasks: Supervisor | None = None,
    ) -> None:
        self.url = url
        # Runs the reader, writer and durable reader: one that raises (an OOM or READONLY
        # reply, a bug) is restarted with backoff, and the hub is not ready meanwhile.
        self.tasks = tasks if tasks is not None else Supervisor()
        self.keys = Keys(prefix)
        self.durable_channels = frozenset(durable_channels)
        self._durable_pending: deque[tuple[str, bytes]] = deque(maxlen=self.MAX_PENDING)
        self._read_from: dict[str, str] = {}  # durable stream key -> last entry id seen
        self._durable_changed = asyncio.Event()
        self._connected_at = 0.0
        self.origin = uuid.uuid4().hex
        # Shown by CLIENT LIST: which hub's bus a connection belongs to.
        self.client_name = f"{prefix}-bus-{self.origin[:12]}"
        self.dropped = 0  # publishes lost to a full queue or a failed send
        self._channels: defaultdict[str, dict[int, Subscriber]] = defaultdict(dict)
        self._next_id = 0
        self._redis: aioredis.Redis | None = None
        self._pending: deque[tuple[str, bytes]] = deque(maxlen=self.MAX_PENDING)
        self._pending_event = asyncio.Event()
        self._changed = asyncio.Event()  # the set of wanted channels changed
        self._connected = asyncio.Event()
        self._synced = asyncio.Event()  # connected and Redis confirmed every wanted channel
        self._confirmed: set[str] = set()  # Redis channel names, per the server's replies
        self._tasks: list[asyncio.Task[None]] = []
        self._last_heard = 0.0
        self._session_connected = False
        self._sending = False
        # Set by disconnect(). The loops check it after every wait, because a cancellation
        # alone can be lost inside redis-py on Python 3.11 (see COMMAND_TIMEOUT_S).
        self._closing = False
        self._sessions = 0
        self._resync: list[Resync] = []
        self._resync_task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self) -> None:
        self._closing = False
        self._connected_at = time.time()
        self._redis = await open_client(self.url, client_name=self.client_name)
        self._tasks = [
            self.tasks.spawn("doorstep-redis-bus-reader", self._read_forever),
            self.tasks.spawn("doorstep-redis-bus-writer", self._write_forever),
            self.tasks.spawn("doorstep-redis-durable", self._read_durable_forever),
        ]
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S * 2):
                await self._connected.wait()
        except TimeoutError:
            await self.disconnect()
            raise RedisConnectionError("could not open the Redis pub/sub connection") from None

    async def disconnect(self) -> None:
        # Best effort: what this hub published last (a final status) should still go out.
        if self._pending and self.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._drained()
        self._closing = True
        for event in (self._changed, self._pending_event, self._connected, self._durable_changed):
            event.set()  # wake every loop so it sees _closing
        # A cancellation can be lost in redis-py: stop_tasks cancels again until they end.
        await stop_tasks([*self._tasks, self._resync_task])
        self._tasks = []
        self._channels.clear()
        self._connected.clear()
        self._synced.clear()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _drained(self) -> None:
        while self._pending or self._durable_pending or self._sending:
            await asyncio.sleep(0.01)

    def subscribe(self, channel: str, subscriber: Subscriber) -> Unsubscribe:
        self._next_id += 1
        token = self._next_id
        subscribers = self._channels[channel]
        subscribers[token] = subscriber
        if len(subscribers) == 1:
            if channel in self.durable_channels:
                # Read from a little before now (what the subscriber's snapshot may not have
                # contained yet: another hub's change whose notice is still on its way), but
                # not from before this bus connected: the hub's mirrors were read from the
                # store after that.
                since = max(time.time() - self.DURABLE_LOOKBACK_S, self._connected_at)
                since_ms = int(since * 1000)
                self._read_from[self.keys.durable(channel)] = f"{since_ms}-0"
                self._durable_changed.set()
            self._wanted_changed()

        def unsubscribe() -> None:
            subscribers = self._channels.get(channel)
            if subscribers is not None:
                subscribers.pop(token, None)
                if not subscribers:
                    del self._channels[channel]
                    self._read_from.pop(self.keys.durable(channel), None)
                    self._wanted_changed()

        return unsubscribe

    async def publish(self, channel: str, message: BusMessage) -> None:
        # Local subscribers first, synchronously, as MemoryBus does; copy because a
        # subscriber may unsubscribe (close) while we iterate.
        for subscriber in list(self._channels.get(channel, {}).values()):
            subscriber(message)
        if len(self._pending) == self.MAX_PENDING:
            self.dropped += 1  # the deque drops its oldest on append
        data = msgspec.msgpack.encode(_Envelope(self.origin, message))
        if channel in self.durable_channels:
            if len(self._durable_pending) == self.MAX_PENDING:
                self.dropped += 1
            self._durable_pending.append((self.keys.durable(channel), data))
        else:
            self._pending.append((self.keys.channel(channel), data))
        self._pending_event.set()

    def on_resync(self, callback: Resync) -> None:
        self._resync.append(callback)

    async def _run_resync(self) -> None:
        """After a reconnect: once every channel is subscribed again, let the hub re-read
        what it mirrors (anything published while we were away is lost to pub/sub)."""
        try:
            await self.wait_synced(timeout=COMMAND_TIMEOUT_S * 2)
        except TimeoutError:
            return  # the session failed again; the next one resyncs
        for callback in self._resync:
            try:
                await callback()
            except Exception:
                log.exception("resync after a Redis reconnect failed")

    async def wait_synced(self, timeout: float = 5.0) -> None:
        """Wait until Redis confirmed a subscription to every channel with local subscribers.

        Not part of the Bus protocol: subscribing is synchronous locally but reaches Redis a
        round trip later, and tests (or a hub that must not miss a message from another hub)
        wait here before relying on it.
        """
        async with asyncio.timeout(timeout):
            await self._synced.wait()

    def _wanted_changed(self) -> None:
        self._synced.clear()
        self._changed.set()

    def _wanted(self) -> set[str]:
        return {self.keys.channel(c) for c in self._channels}

    def _check_synced(self) -> None:
        if self.connected and self._confirmed == self._wanted():
            self._synced.set()

    # ------------------------------------------------------------------ reader

    async def _read_forever(self) -> None:
        backoff = self.BACKOFF_MIN_S
        while not self._closing:
            self._session_connected = False
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except _CONNECTION_ERRORS as exc:
                log.warning("Redis pub/sub connection lost (%s); reconnecting", exc)
            except Exception:
                log.exception("Redis pub/sub reader failed; reconnecting")
            if self._session_connected:
                backoff = self.BACKOFF_MIN_S  # it worked until now: a fresh outage
            await asyncio.sleep(backoff * (0.5 + _jitter()))
            backoff = min(backoff * 2, self.BACKOFF_MAX_S)

    async def _session(self) -> None:
        """One pub/sub connection: subscribe, read until it fails; the caller reconnects."""
        assert self._redis is not None
        pubsub = self._redis.pubsub()
        try:
            await pubsub.connect()
            self._session_connected = True
            self._confirmed = set()
            self._last_heard = time.monotonic()
            self._changed.set()  # (re)subscribe to every wanted channel
            self._connected.set()
            self._check_synced()
            self._sessions += 1
            if self._sessions > 1 and self._resync:
                self._resync_task = asyncio.create_task(self._run_resync())
            tasks = [
                asyncio.create_task(self._read(pubsub)),
                asyncio.create_task(self._control(pubsub)),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()  # raise what ended the session
            raise RedisConnectionError("pub/sub session ended")
        finally:
            self._connected.clear()
            self._synced.clear()
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _read(self, pubsub: Any) -> None:
        """The only reader of the connection; dispatches synchronously, never awaits a
        subscriber."""
        prefix_length = len(self.keys.channel(""))
        while True:
            # Blocks until Redis sends something: a message, a subscribe confirmation, a pong.
            response = await pubsub.get_message(timeout=None)
            self._last_heard = time.monotonic()
            if response is None:
                continue
            kind = response["type"]
            if kind == "message":
                self._dispatch(response["channel"].decode()[prefix_length:], response["data"])
            elif kind == "subscribe":
                self._confirmed.add(response["channel"].decode())
                self._check_synced()
            elif kind == "unsubscribe":
                self._confirmed.discard(response["channel"].decode())
                self._check_synced()

    async def _read_durable_forever(self) -> None:
        """Read the durable channels this hub has subscribers for, from where it left off."""
        backoff = self.BACKOFF_MIN_S
        while not self._closing:
            streams = dict(self._read_from)
            if not streams:
                self._durable_changed.clear()
                await self._durable_changed.wait()
                continue
            assert self._redis is not None
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    reply = await self._redis.xread(streams, count=500, block=1000)
                backoff = self.BACKOFF_MIN_S
            except asyncio.CancelledError:
                raise
            except (*_CONNECTION_ERRORS, TimeoutError) as exc:
                log.warning("reading durable channels failed (%s); retrying", exc)
                await asyncio.sleep(backoff * (0.5 + _jitter()))
                backoff = min(backoff * 2, self.BACKOFF_MAX_S)
                continue
            prefix_length = len(self.keys.durable(""))
            for key, entries in reply or []:
                key = key.decode()
                if key not in self._read_from:
                    continue  # unsubscribed meanwhile
                for entry_id, fields in entries:
                    self._read_from[key] = entry_id.decode()
                    self._dispatch(key[prefix_length:], fields[b"m"])

    def _dispatch(self, channel: str, data: bytes) -> None:
        try:
            envelope = _envelope_decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("undecodable message on bus channel %s dropped", channel)
            return
        if envelope.origin == self.origin:
            return  # already delivered locally by publish()
        for subscriber in list(self._channels.get(channel, {}).values()):
            try:
                subscriber(envelope.message)
            except Exception:
                # One broken subscriber must not take the reader, and every other hub
                # subscriber with it, down.
                log.exception("bus subscriber of %s failed", channel)

    async def _control(self, pubsub: Any) -> None:
        """The only writer of the connection: (un)subscribes as local subscriber sets become
        non-empty/empty, and pings when idle."""
        requested: set[str] = set()
        while not self._closing:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancellation
            # that arrives as the event is set, and this task would outlive disconnect().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.PING_INTERVAL_S):
                    await self._changed.wait()
            self._changed.clear()
            # Read the wanted set after clearing the flag: a change made while we await the
            # commands below sets it again and is handled on the next turn.
            wanted = self._wanted()
            add, remove = wanted - requested, requested - wanted
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                if add:
                    await pubsub.subscribe(*sorted(add))
                if remove:
                    await pubsub.unsubscribe(*sorted(remove))
            requested = wanted
            if not add and not remove:
                self._check_synced()
            silent = time.monotonic() - self._last_heard
            if silent > 3 * self.PING_INTERVAL_S:
                raise RedisConnectionError(f"no reply from Redis for {silent:.0f} s")
            if silent > self.PING_INTERVAL_S:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    await pubsub.ping()

    # ------------------------------------------------------------------ writer

    async def _write_forever(self) -> None:
        """Send the queued publishes in batches; a connection error is retried here, any
        other error (OOM under ``maxmemory``, READONLY after a failover) ends the run, after
        putting the unsent durable messages back, and the supervisor restarts it."""
        backoff = self.BACKOFF_MIN_S
        if self._pending or self._durable_pending:
            self._pending_event.set()  # a restarted writer resends what a failed run kept
        while not self._closing:
            await self._pending_event.wait()
            self._pending_event.clear()
            await self._connected.wait()
            if self._closing or not (self._pending or self._durable_pending):
                continue
            # Take the whole queues before awaiting: publishes made during the send go into
            # the next batch, in order.
            batch = list(self._pending)
            self._pending.clear()
            durable = list(self._durable_pending)
            self._durable_pending.clear()
            assert self._redis is not None
            self._sending = True
            try:
                # Not a transaction: under OOM, Redis refuses the XADDs but still takes the
                # PUBLISHes, so live positions keep flowing while durable messages wait.
                async with (
                    asyncio.timeout(COMMAND_TIMEOUT_S),
                    self._redis.pipeline(transaction=False) as pipe,
                ):
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    for key, data in durable:
                        pipe.xadd(key, {"m": data}, maxlen=self.DURABLE_MAXLEN, approximate=True)
                    results = await pipe.execute(raise_on_error=False)
            except (*_CONNECTION_ERRORS, TimeoutError) as exc:
                # Live messages at most once: the batch may be partly sent, it is not resent.
                # Durable ones are resent (at least once), ahead of newer ones.
                self.dropped += len(batch)
                self._durable_pending.extendleft(reversed(durable))
                log.warning(
                    "Redis publish of %d messages failed (%s); %d durable ones kept for retry",
                    len(batch) + len(durable),
                    exc,
                    len(durable),
                )
                await asyncio.sleep(backoff * (0.5 + _jitter()))
                backoff = min(backoff * 2, self.BACKOFF_MAX_S)
                if self._pending or self._durable_pending:
                    self._pending_event.set()
                continue
            except BaseException:
                # Anything else (a cancellation mid-send, a bug): the durable batch is kept.
                self._durable_pending.extendleft(reversed(durable))
                raise
            finally:
                self._sending = False
            refused = _refused_durable(results[len(batch) :], durable)
            if refused:
                # Kept, ahead of newer ones, for the restarted writer; the error ends this
                # run, so that the hub reports not ready until a send works again.
                self._durable_pending.extendleft(reversed(refused))
                error = next(r for r in results if isinstance(r, Exception))
                raise DurableSendRefused(len(refused), error)
            backoff = self.BACKOFF_MIN_S


class DurableSendRefused(Exception):
    """Redis answered durable publishes with an error (OOM, READONLY): they are kept."""

    def __init__(self, count: int, error: Exception) -> None:
        super().__init__(f"Redis refused {count} durable messages: {error}")
        self.count = count
        self.error = error


def _refused_durable(
    results: list[Any], durable: list[tuple[str, bytes]]
) -> list[tuple[str, bytes]]:
    """The durable messages whose XADD got an error reply, in order."""
    return [
        item for item, result in zip(durable, results, strict=True) if isinstance(result, Exception)
    ]


def _jitter() -> float:
    return random.random()
