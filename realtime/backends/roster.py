"""The roster: who is online on which hub, where each technician was last seen, who is near.

With one hub process this is what the hub already knows; with several hubs behind a load
balancer (each technician's socket on one of them) every hub must answer the same three
questions about the whole fleet: which technicians are online (on any hub), where was each
last seen, and who is near a destination (dispatch). ``MemoryRoster`` is the embedded,
single-process implementation; ``realtime.backends.redis.roster.RedisRoster`` is the shared
one. Both pass ``tests/realtime/backends/test_roster_contract.py``.

Presence is a lease, not a flag: a hub holds a lease on each technician connected to it until
a time on its own clock (``until_t``, passed in like every time here, never read inside), and
renews it periodically. A hub that dies without a word (kill -9, a lost machine) stops
renewing, so its technicians drop out of ``online`` once their leases run out; nobody has to
clean up after it. Hubs compare lease times from their own clocks, so their clocks must agree
(NTP) to well within a lease.

Positions: the newest per technician by (t, seq) wins, whatever order they arrive in; an older
one never overwrites it. ``near`` searches the newest positions, whatever their age and whether
or not the technician is online: a dispatcher combines it with ``positions`` (fix time) and
``online``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

import msgspec

from geofence.geo import distance_m
from realtime.backends.base import StoredFix

MAX_SEQ = 2**53 - 1  # the wire protocol's highest seq (realtime.protocol.MAX_SEQ)

# Redis GEO stores positions as 52-bit geohashes in Web Mercator's latitude range; a position
# beyond it (within ~550 km of a pole) is kept as the last position but not indexed for
# ``near``, on every implementation alike.
GEO_MAX_LAT = 85.05112878


class RosterEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """A technician's last position as the roster keeps it: the fix and when the hub got it.

    The fields are those of a fleet entry / position message plus ``received_t`` (hub clock).
    """

    technician_id: str
    seq: int
    t: float  # fix time (device clock, as validated by the hub)
    lat: float
    lon: float
    received_t: float  # hub time the fix arrived
    acc: float | None = None
    speed: float | None = None
    heading: float | None = None

    @classmethod
    def from_fix(cls, fix: StoredFix) -> RosterEntry:
        """The entry for a fix as the hub stores it in the location history."""
        return cls(
            technician_id=fix.technician_id,
            seq=fix.seq,
            t=fix.t,
            lat=fix.lat,
            lon=fix.lon,
            received_t=fix.received_t,
            acc=fix.acc,
            speed=fix.speed,
            heading=fix.heading,
        )


class Roster(Protocol):
    """Fleet presence and last positions shared by every hub of a deployment."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def set_online(
        self,
        hub_id: str,
        technician_ids: Iterable[str],
        until_t: float,
        *,
        now: float | None = None,
    ) -> None:
        """``hub_id`` holds a lease on each of these technicians until ``until_t``.

        Without ``now`` (a technician just connected to this hub): take the lease whoever holds
        it, the newest connection wins. With ``now`` (the periodic renewal of every technician
        connected here): renew this hub's leases and take absent or expired (at ``now``) ones,
        but leave alone a lease another hub holds and that is live at ``now``: the technician
        has reconnected there and this hub's socket is stale (it has not noticed yet), or the
        technician has a second device there. Renewing with ``now`` is what keeps two hubs
        from taking the lease from each other on every renewal.
        """
        ...

    async def set_offline(self, hub_id: str, technician_id: str) -> None:
        """Drop the technician's lease if, and only if, ``hub_id`` holds it (a technician who
        already reconnected to hub B stays online when hub A sees its old socket close)."""
        ...

    async def online(self, now: float) -> dict[str, str]:
        """Technician id -> hub id of every lease still live at ``now`` (``until_t > now``)."""
        ...

    async def record_positions(self, entries: list[RosterEntry]) -> None:
        """Keep each entry that is newer, by (t, seq), than the technician's stored one.

        Each entry is compared and written atomically, so hubs racing cannot make an older
        entry win. An invalid entry (``ValueError``: a coordinate out of range, a non-finite
        number, a seq outside 0..2^53-1) writes nothing of the batch. Entries of one
        technician in one batch are applied in order (the newest still wins).
        """
        ...

    async def positions(self, technician_ids: Iterable[str]) -> dict[str, RosterEntry]:
        """The stored entries of these technicians; unknown ones are left out."""
        ...

    async def near(
        self, lat: float, lon: float, radius_m: float, limit: int
    ) -> list[tuple[str, float]]:
        """Up to ``limit`` technicians whose last position is within ``radius_m`` of (lat, lon),
        with the distance in metres, nearest first.

        Distances may differ between implementations by well under 1 % (Redis: haversine on
        a sphere from 52-bit geohashes; memory: WGS84 geodesic), so a technician within that
        much of the radius may be in on one and out on the other.
        """
        ...

    async def forget_positions_before(self, cutoff: float) -> int:
        """Retention: drop every last position (and its GEO entry) whose fix time ``t`` is
        before ``cutoff``; returns how many. Leases are left alone."""
        ...

    async def forget(self, technician_id: str) -> bool:
        """Erasure: drop the technician's last position and GEO entry; True if there was one."""
        ...


def check_entries(entries: Iterable[RosterEntry]) -> None:
    """``ValueError`` for an entry no implementation may store (see ``record_positions``)."""
    for entry in entries:
        if not 0 <= entry.seq <= MAX_SEQ:
            raise ValueError(f"seq {entry.seq} of {entry.technician_id!r} is outside 0..{MAX_SEQ}")
        if not all(map(math.isfinite, (entry.t, entry.received_t, entry.lat, entry.lon))):
            raise ValueError(f"non-finite time or coordinate for {entry.technician_id!r}")
        if not (-90.0 <= entry.lat <= 90.0 and -180.0 <= entry.lon <= 180.0):
            raise ValueError(
                f"position ({entry.lat}, {entry.lon}) of {entry.technician_id!r} is out of range"
            )


def check_centre(lat: float, lon: float) -> None:
    """``ValueError`` for a ``near`` centre no implementation can search around."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ValueError("non-finite search centre")
    if not (-GEO_MAX_LAT <= lat <= GEO_MAX_LAT and -180.0 <= lon <= 180.0):
        raise ValueError(f"search centre ({lat}, {lon}) is out of range")


def geo_indexed(entry: RosterEntry) -> bool:
    """Whether ``near`` can find this position (see ``GEO_MAX_LAT``)."""
    return -GEO_MAX_LAT <= entry.lat <= GEO_MAX_LAT


def is_newer(entry: RosterEntry, stored: RosterEntry | None) -> bool:
    return stored is None or (entry.t, entry.seq) > (stored.t, stored.seq)


class MemoryRoster:
    """The roster of the embedded backend: one process, so plain dicts.

    Nothing survives a restart, and need not: after a restart nobody is connected, and each
    technician's position comes back with its next fix (the location history keeps the rest).
    """

    def __init__(self) -> None:
        self._leases: dict[str, tuple[str, float]] = {}  # technician -> (hub, until_t)
        self._last: dict[str, RosterEntry] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def set_online(
        self,
        hub_id: str,
        technician_ids: Iterable[str],
        until_t: float,
        *,
        now: float | None = None,
    ) -> None:
        for technician_id in technician_ids:
            held = self._leases.get(technician_id)
            if now is not None and held is not None and held[0] != hub_id and held[1] > now:
                continue  # another hub's live lease: it has the newer connection
            self._leases[technician_id] = (hub_id, until_t)

    async def set_offline(self, hub_id: str, technician_id: str) -> None:
        held = self._leases.get(technician_id)
        if held is not None and held[0] == hub_id:
            del self._leases[technician_id]

    async def online(self, now: float) -> dict[str, str]:
        return {tid: hub for tid, (hub, until_t) in self._leases.items() if until_t > now}

    async def record_positions(self, entries: list[RosterEntry]) -> None:
        check_entries(entries)
        for entry in entries:
            if is_newer(entry, self._last.get(entry.technician_id)):
                self._last[entry.technician_id] = entry

    async def positions(self, technician_ids: Iterable[str]) -> dict[str, RosterEntry]:
        return {tid: self._last[tid] for tid in technician_ids if tid in self._last}

    async def near(
        self, lat: float, lon: float, radius_m: float, limit: int
    ) -> list[tuple[str, float]]:
        check_centre(lat, lon)
        if limit <= 0 or radius_m < 0:
            return []
        found = []
        for technician_id, entry in self._last.items():
            if not geo_indexed(entry):
                continue
            distance = distance_m(lat, lon, entry.lat, entry.lon)
            if distance <= radius_m:
                found.append((distance, technician_id))
        found.sort()
        return [(technician_id, distance) for distance, technician_id in found[:limit]]

    async def forget_positions_before(self, cutoff: float) -> int:
        old = [tid for tid, entry in self._last.items() if entry.t < cutoff]
        for technician_id in old:
            del self._last[technician_id]
        return len(old)

    async def forget(self, technician_id: str) -> bool:
        return self._last.pop(technician_id, None) is not None
