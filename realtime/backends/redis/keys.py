"""Every Redis key name in one place, and how seqs and times are written into them.

Key layout (``p`` is ``DOORSTEP_REDIS_PREFIX``, ``doorstep`` by default)::

    {p}:bookings                  HASH   booking id -> Booking JSON
    {p}:bookings:active           SET    ids of active bookings
    {p}:bookings:active-of:<tid> SET   a technician's active booking ids (stale pruned on read)
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
    {p}:counters:<namespace>:<key> HASH  field -> total (HINCRBYFLOAT: hubs add, never overwrite)
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

The roster's keys (``{p}:roster:*``) are laid out in ``roster.py``; how history is trimmed
(and ``head`` is not) in ``store_history.py``.
"""

from __future__ import annotations

import re

# A prefix becomes part of a hash tag and of SCAN patterns, so it must not contain braces or
# glob characters, nor ":" (``{a:tech:*`` must never match the keys of a prefix "a:tech:b").
# The same rule is enforced on DOORSTEP_REDIS_PREFIX.
PREFIX_PATTERN = r"^[A-Za-z0-9_.-]+$"


def check_prefix(prefix: str) -> str:
    """The prefix, if it is safe inside a hash tag and a SCAN pattern; ValueError otherwise."""
    if not re.match(PREFIX_PATTERN, prefix):
        raise ValueError(f"Redis key prefix {prefix!r} must match {PREFIX_PATTERN}")
    return prefix


MAX_SEQ = 2**53 - 1  # the wire protocol's highest seq (realtime.protocol.MAX_SEQ)
SEQ_DIGITS = len(str(MAX_SEQ))  # 16


def seq_key(seq: int) -> str:
    """A seq as 16 digits: equal-t members of the time index then sort by seq, exactly
    SQLite's ``ORDER BY t, seq``."""
    return f"{seq:0{SEQ_DIGITS}d}"


def score(value: float) -> str:
    # repr() round-trips a float exactly (and gives inf/-inf, which Redis parses).
    return repr(float(value))


class Keys:
    """Every key name in one place (see the module docstring for the layout)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = check_prefix(prefix)
        core = f"{{{prefix}}}"
        self.bookings = f"{core}:bookings"
        self.bookings_active = f"{core}:bookings:active"
        self.bookings_waiting = f"{core}:bookings:waiting"
        self._bookings_active_of = f"{core}:bookings:active-of:"
        self.incidents = f"{core}:incidents"
        self.incidents_open = f"{core}:incidents:open"
        self.incidents_by_reporter = f"{core}:incidents:by-reporter"
        self.alerts = f"{core}:alerts"
        self.alerts_t = f"{core}:alerts:t"
        self.alerts_open = f"{core}:alerts:open"
        self._core = core

    def bookings_active_of(self, technician_id: str) -> str:
        """The ids of a technician's active bookings (may hold stale ones, see the store)."""
        return f"{self._bookings_active_of}{technician_id}"

    def booking_audit(self, booking_id: str) -> str:
        return f"{self._core}:booking-audit:{booking_id}"

    def incident_audit(self, incident_id: str) -> str:
        return f"{self._core}:incident-audit:{incident_id}"

    def alert_audit(self, alert_id: str) -> str:
        return f"{self._core}:alert-audit:{alert_id}"

    def documents(self, namespace: str) -> str:
        return f"{self._core}:doc:{namespace}"

    def counters(self, namespace: str, key: str) -> str:
        return f"{self._core}:counters:{namespace}:{key}"

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
