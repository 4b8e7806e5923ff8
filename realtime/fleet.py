"""The fleet as this hub knows it: each technician's seqs, last position, presence.

The technicians connected here are this hub's own: their seq trackers, their newest fix, a
lease on them in the shared roster (renewed every ``PRESENCE_REFRESH_S``; a hub that dies
stops renewing and they show offline after ``PRESENCE_LEASE_S``). Technicians on other hubs
are known from the roster, as of the last ``look_around``. Every ``fleet_interval_s`` the
positions that changed go to the operators' fleet channel and into the roster. Each entry
carries the technician's display name and status (idle, the current visit's, offline) from the
profiles and bookings mirrors, for the console's labels and list.

Read by the rest of the hub through ``FleetView`` (``realtime/ports.py``); written by the
fix pipeline (``realtime/pipeline.py``) and the technician socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from realtime import protocol as wire
from realtime.aio import stop_tasks
from realtime.backends.base import Bus, BusMessage, Store
from realtime.backends.roster import Roster, RosterEntry
from realtime.booking import Booking
from realtime.channels import FLEET_CHANNEL
from realtime.ingest import SeqTracker
from realtime.ports import BookingView, Clock, ProfileView, Spawn
from realtime.positions import fleet_entry, location_of, position, roster_entry

log = logging.getLogger("doorstep.fleet")

# A hub holds a lease on each technician connected to it, renewed every PRESENCE_REFRESH_S;
# a hub that dies (kill -9) stops renewing and its technicians show offline after the lease.
PRESENCE_LEASE_S = 15.0
PRESENCE_REFRESH_S = 5.0

# A fleet entry's ``status`` besides a current visit's own (en_route .. in_service).
IDLE = "idle"
OFFLINE = "offline"


def technician_status(online: bool, visit: Booking | None) -> str:
    """What the console shows a technician doing: ``offline`` wins over a visit (their
    phone is silent, whatever the booking says), then the visit's status, else ``idle``."""
    if not online:
        return OFFLINE
    return visit.status.value if visit is not None else IDLE


@dataclass
class TechnicianState:
    seq: SeqTracker
    durable_seq: int
    connections: int = 0
    last: wire.Location | None = None
    # Hub time of the last accepted fix: "is the phone still sending?" without trusting the
    # phone's clock (the visit watchdog's signal-lost timer).
    heard_t: float | None = None


class Fleet:
    def __init__(
        self,
        *,
        hub_id: str,
        store: Store,
        bus: Bus,
        roster: Roster,
        clock: Clock,
        spawn: Spawn,
        interval_s: float,
    ) -> None:
        self.hub_id = hub_id
        self.store = store
        self.bus = bus
        self.roster = roster
        self.clock = clock
        self.spawn = spawn
        self.interval_s = interval_s
        self._technicians: dict[str, TechnicianState] = {}
        # Technicians online on other hubs, as of the last look at the roster.
        self._elsewhere: set[str] = set()
        self._dirty: set[str] = set()
        self._presence_t = float("-inf")
        self._roster_tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        # Names and visits for the console's labels; set by the hub once those desks exist
        # (the bookings desk is built with this fleet, so they cannot come in here).
        self._names: ProfileView | None = None
        self._visits: BookingView | None = None

    def describe_with(self, names: ProfileView, visits: BookingView) -> None:
        """Fleet entries carry the technician's display name and status from these.

        Both are in-memory mirrors (profiles, active bookings): the fleet loop builds entries
        every second and must not read the store for them.
        """
        self._names = names
        self._visits = visits

    def visit_changed(self, booking: Booking) -> None:
        """A booking changed: its technician's status may have, so send their entry again.

        Only for technicians connected here: the hub holding the socket speaks for them
        (every hub hears of the change; one fleet entry is enough, and a hub that knows the
        technician from the roster only would send a stale position).
        """
        technician_id = booking.technician_id
        if technician_id is None:
            return
        state = self._technicians.get(technician_id)
        if state is not None and state.connections > 0:
            self._dirty.add(technician_id)

    def start(self) -> None:
        self._task = self.spawn("doorstep-fleet", self._loop)  # type: ignore[assignment]

    async def stop(self) -> None:
        await stop_tasks([self._task])
        await asyncio.gather(*self._roster_tasks, return_exceptions=True)

    # ------------------------------------------------------------------ state

    def state(self, technician_id: str) -> TechnicianState:
        """The state of a technician connected here (``connected`` loaded it)."""
        return self._technicians[technician_id]

    def state_if_known(self, technician_id: str) -> TechnicianState | None:
        return self._technicians.get(technician_id)

    async def load(self, technician_id: str) -> TechnicianState:
        """The technician's state; on first use read from the store (resume seq, last fix)."""
        state = self._technicians.get(technician_id)
        if state is None:
            highest = await self.store.highest_seq(technician_id)
            stored = await self.store.last_fix(technician_id)
            # Another task (a second connection, an assignment) may have loaded it meanwhile.
            state = self._technicians.get(technician_id)
            if state is None:
                state = TechnicianState(
                    seq=SeqTracker(highest),
                    durable_seq=highest,
                    last=location_of(stored) if stored is not None else None,
                    heard_t=stored.received_t if stored is not None else None,
                )
                self._technicians[technician_id] = state
        return state

    def moved(self, technician_id: str) -> None:
        """Its shown position changed: in the next fleet message and roster write."""
        self._dirty.add(technician_id)

    async def connected(self, technician_id: str) -> TechnicianState:
        state = await self.load(technician_id)
        if state.connections == 0:
            await self._catch_up(technician_id, state)
        state.connections += 1
        self._dirty.add(technician_id)
        # Taken whoever held it: this is the technician's newest connection.
        await self._safely(
            self.roster.set_online(self.hub_id, [technician_id], self.clock() + PRESENCE_LEASE_S)
        )
        return state

    async def _catch_up(self, technician_id: str, state: TechnicianState) -> None:
        """Take in what other hubs stored while the technician was connected to them.

        With several hubs a technician moves between them (a reconnect through the load
        balancer, a hub killed): the seqs and the last fix another hub stored meanwhile are
        newer than this hub's memory, and resuming from stale ones would accept duplicates.
        The store is the truth; local state only wins for fixes not yet flushed to it.
        """
        highest = await self.store.highest_seq(technician_id)
        stored = await self.store.last_fix(technician_id)
        state.seq.highest = max(state.seq.highest, highest)
        state.durable_seq = max(state.durable_seq, highest)
        if stored is not None and (state.last is None or stored.t > state.last.t):
            state.last = location_of(stored)
            state.heard_t = max(state.heard_t or 0.0, stored.received_t)

    def disconnected(self, technician_id: str) -> None:
        state = self._technicians.get(technician_id)
        if state is None:
            return
        state.connections -= 1
        self._dirty.add(technician_id)
        if state.connections == 0:
            # A reconnecting client resends from its first ack: the hole is not needed.
            state.seq.forget_hole()
            # Only if this hub still holds the lease: they may be on another hub already.
            task = asyncio.create_task(
                self._safely(self.roster.set_offline(self.hub_id, technician_id))
            )
            self._roster_tasks.add(task)
            task.add_done_callback(self._roster_tasks.discard)

    # ------------------------------------------------------------------ reading

    async def heard_t(self, technician_id: str) -> float | None:
        """Hub time of the technician's last accepted fix, on any hub; None when none.

        This hub's memory when the technician's socket is here; otherwise the store, where
        the hub they are connected to writes their fixes.
        """
        state = self._technicians.get(technician_id)
        local = state.heard_t if state is not None else None
        if state is not None and state.connections > 0:
            return local
        stored = await self.store.last_fix(technician_id)
        if stored is None:
            return local
        return max(local or 0.0, stored.received_t)

    def last_fix(self, technician_id: str) -> wire.Location | None:
        state = self._technicians.get(technician_id)
        return state.last if state is not None else None

    def last_position(self, technician_id: str) -> wire.Position | None:
        fix = self.last_fix(technician_id)
        return position(technician_id, fix) if fix is not None else None

    def is_online(self, technician_id: str) -> bool:
        """Connected here, or on another hub as of the last ``look_around``."""
        state = self._technicians.get(technician_id)
        return (state is not None and state.connections > 0) or technician_id in self._elsewhere

    def connected_here(self) -> list[str]:
        return sorted(t for t, state in self._technicians.items() if state.connections > 0)

    def entry(self, technician_id: str) -> wire.FleetEntry:
        online = self.is_online(technician_id)
        visit = self._visits.current_visit(technician_id) if self._visits is not None else None
        return fleet_entry(
            technician_id,
            online,
            self.last_fix(technician_id),
            name=self._names.name_of(technician_id) if self._names is not None else None,
            status=technician_status(online, visit),
        )

    def snapshot(self) -> list[wire.FleetEntry]:
        """Every online technician, on this hub or another (call ``look_around`` first)."""
        return [self.entry(t) for t in sorted(self._technicians) if self.is_online(t)]

    async def look_around(self, technician_ids: Iterable[str] = ()) -> None:
        """Update this hub's view of technicians on other hubs from the roster: who is online
        and, for them and ``technician_ids``, their last position (when newer than known).

        Awaited before a snapshot is built, so that the snapshot itself needs no await. A
        roster that cannot be reached leaves the view as it was (logged).
        """
        try:
            online = await self.roster.online(self.clock())
            self._elsewhere = {t for t, hub in online.items() if hub != self.hub_id}
            wanted = (self._elsewhere | set(technician_ids)) - set(self.connected_here())
            entries = await self.roster.positions(sorted(wanted))
        except Exception:
            log.warning("roster unavailable; showing this hub's own view", exc_info=True)
            return
        for technician_id, entry in entries.items():
            state = self._technicians.get(technician_id)
            if state is None:
                # Seqs come from the store when the technician connects here (_catch_up).
                state = TechnicianState(seq=SeqTracker(-1), durable_seq=-1)
                self._technicians[technician_id] = state
            if state.last is None or (entry.t, entry.seq) > (state.last.t, state.last.seq):
                state.last = location_of(entry)
                state.heard_t = max(state.heard_t or 0.0, entry.received_t)

    # ------------------------------------------------------------------ forgetting

    def forget_positions_before(self, cutoff: float) -> int:
        """Retention: drop remembered last positions whose fix time is before ``cutoff``;
        the seqs stay (resume). Returns how many."""
        gone = 0
        for state in self._technicians.values():
            if state.last is not None and state.last.t < cutoff:
                state.last = None
                gone += 1
        return gone

    def forget_position(self, technician_id: str) -> None:
        """Erasure: this hub no longer remembers where the technician was."""
        state = self._technicians.get(technician_id)
        if state is not None:
            state.last = None

    # ------------------------------------------------------------------ sharing

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self._share_presence()
            if not self._dirty:
                continue
            dirty, self._dirty = sorted(self._dirty), set()
            if any(not self._technicians[t].connections for t in dirty):
                # A socket closed here: before saying "offline", see whether the technician
                # is already connected to another hub (moving hubs is not going offline).
                await self.look_around()
            fleet = wire.Fleet(positions=[self.entry(t) for t in dirty])
            await self.bus.publish(FLEET_CHANNEL, BusMessage(kind="fleet", text=wire.encode(fleet)))
            await self._safely(self.roster.record_positions(self._roster_entries(dirty)))

    async def _share_presence(self) -> None:
        """Renew this hub's leases on its technicians (not taking live leases of others)."""
        now = self.clock()
        if now - self._presence_t < PRESENCE_REFRESH_S:
            return
        self._presence_t = now
        connected = self.connected_here()
        if connected:
            await self._safely(
                self.roster.set_online(self.hub_id, connected, now + PRESENCE_LEASE_S, now=now)
            )

    def _roster_entries(self, technician_ids: list[str]) -> list[RosterEntry]:
        """The newest positions this hub received, for the roster."""
        entries = []
        for technician_id in technician_ids:
            state = self._technicians.get(technician_id)
            if state is None or state.last is None or state.heard_t is None:
                continue
            if state.connections <= 0 and technician_id in self._elsewhere:
                continue  # learned from the roster, not ours to write back
            entries.append(roster_entry(technician_id, state.last, state.heard_t))
        return entries

    async def _safely(self, operation: Awaitable[None]) -> None:
        """Roster writes are a shared view, not safety data: a failure is logged, not fatal
        (the next refresh repairs it)."""
        try:
            await operation
        except Exception:
            log.warning("roster update failed", exc_info=True)
