"""The visit watchdog in the hub: asks overdue technicians "are you OK?", raises what follows.

Thin I/O around ``alerts/watchdog.py``. Every ``watchdog_interval_s`` one task looks at the
bookings in a visit (``arrived``/``in_service``), hands each one's watch state, the booking's
times and the technician's last fix (hub time) to the pure core with the hub's clock, and
carries out its decisions:

- ``prompt``: a ``check`` message to the technician's sockets (and again when they reconnect
  while it is open); the technician answers ``check_ok`` on its socket.
- ``raise_incident``: an ``overdue_visit`` incident through the SafetyDesk (durable,
  escalated like an SOS) and a ``visit_overdue`` alert pointing at it.
- ``signal_lost``: a ``signal_lost`` alert.

With several hubs one of them watches: the holder of the store's ``watchdog`` lease, renewed
every tick and taken over by another hub within ``3 x watchdog_interval_s`` (at least 10 s)
when its holder dies. The watch states live in the store, not in the watching hub: each
tick and each answer is a read-modify-write of one watch under the store's lock for that
visit, so an answer arriving on another hub (where the technician's socket is) is never
overwritten by a tick. The technician's last fix time comes from the store when their
socket is on another hub.

Act first, then store the new watch state: a crash in between repeats the decision after the
restart, and repeats are harmless because decision keys are the ids of what is raised (the
incident's client id, the alert's id). The states are small documents (namespace
``watches``) written only when they change, which is rare; a watch is dropped when its visit
ends.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from alerts import watchdog as core
from alerts.safety_alert import AlertKind, open_alert
from alerts.watchdog import Decision, DecisionKind, UnknownCheck, Visit, Watch, WatchdogConfig
from realtime import protocol as wire
from realtime.aio import stop_tasks
from realtime.backends.base import Bus, BusMessage, Store
from realtime.booking import Booking
from realtime.channels import technician_channel
from realtime.cluster import LOCK_TTL_S
from realtime.ports import AlertRaiser, BookingView, Clock, FleetView, Spawn, SystemIncidents
from realtime.zoning import IN_VISIT

log = logging.getLogger("doorstep.watchdog")

WATCHES = "watches"
QUESTION = "Are you OK?"
ACTOR = "system:watchdog"
OVERDUE_INCIDENT = "overdue_visit"

_watch_decoder = msgspec.json.Decoder(Watch)


class Watchdog:
    def __init__(
        self,
        *,
        config: WatchdogConfig,
        interval_s: float,
        hub_id: str,
        store: Store,
        bus: Bus,
        bookings: BookingView,
        fleet: FleetView,
        alerts: AlertRaiser,
        incidents: SystemIncidents,
        spawn: Spawn,
        clock: Clock,
    ) -> None:
        self.config = config
        self.interval_s = interval_s
        self.hub_id = hub_id
        self.store = store
        self.bus = bus
        self.bookings = bookings
        self.fleet = fleet
        self.alerts = alerts
        self.incidents = incidents
        self.spawn = spawn
        self.clock = clock
        self.lease_ttl_s = max(3 * interval_s, 10.0)
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> None:
        self._task = self.spawn("doorstep-watchdog", self._loop)  # type: ignore[assignment]

    async def _watches(self) -> dict[str, Watch]:
        """Every stored watch, by booking id (one small document per visit in progress)."""
        watches = {}
        for booking_id, raw in (await self.store.list_documents(WATCHES)).items():
            try:
                watches[booking_id] = _watch_decoder.decode(raw)
            except msgspec.DecodeError:
                log.error(
                    "stored watch of booking %s is unreadable; starting it afresh", booking_id
                )
        return watches

    async def _watch(self, booking_id: str) -> Watch | None:
        raw = await self.store.get_document(WATCHES, booking_id)
        try:
            return _watch_decoder.decode(raw) if raw is not None else None
        except msgspec.DecodeError:
            return None

    async def close(self) -> None:
        await stop_tasks([self._task])

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception:
                # A failing store must not end the watchdog: the next tick tries again.
                log.exception("watchdog tick failed")

    # ------------------------------------------------------------------ deciding

    async def tick(self) -> None:
        """Evaluate every visit once at the hub's current time, if this hub is the watcher."""
        if not await self.store.hold_lease(WATCHES, self.hub_id, self.lease_ttl_s):
            return  # another hub watches
        bookings = [b for b in self.bookings.active_bookings() if _in_visit(b)]
        for booking_id in sorted(set(await self._watches()) - {b.id for b in bookings}):
            # The visit is over (checked out, cancelled): nothing left to watch.
            await self.store.delete_document(WATCHES, booking_id)
        for booking in bookings:
            try:
                await self._evaluate(booking)
            except Exception:
                # One visit's failure (a store error raising its incident) must not keep
                # the others from being watched; its decision is repeated next tick.
                log.exception("watchdog: visit %s could not be handled", booking.id)

    async def _evaluate(self, booking: Booking) -> None:
        """Decide for one visit, act, then store the new state."""
        assert booking.technician_id is not None and booking.arrived_t is not None
        visit = Visit(
            booking_id=booking.id,
            technician_id=booking.technician_id,
            arrived_t=booking.arrived_t,
            expected_duration_s=booking.expected_duration_s,
            last_fix_t=await self.fleet.heard_t(booking.technician_id),
        )
        async with self.store.lock(f"watch:{booking.id}", LOCK_TTL_S):
            watch = await self._watch(booking.id) or core.new_watch(visit)
            updated, decisions = core.evaluate(watch, visit, self.config, self.clock())
            for decision in decisions:
                await self._act(decision)
            if updated != watch:
                await self._save(updated)

    async def _save(self, watch: Watch) -> None:
        await self.store.put_document(WATCHES, watch.booking_id, msgspec.json.encode(watch))

    # ------------------------------------------------------------------ acting

    async def _act(self, decision: Decision) -> None:
        if decision.kind is DecisionKind.PROMPT:
            assert decision.answer_by is not None
            prompt = wire.CheckPrompt(
                id=decision.key,
                booking_id=decision.booking_id,
                question=QUESTION,
                t=decision.t,
                answer_by=decision.answer_by,
            )
            await self._tell_technician(decision.technician_id, prompt)
        elif decision.kind is DecisionKind.RAISE_INCIDENT:
            await self._raise_overdue(decision)
        elif decision.kind is DecisionKind.SIGNAL_LOST:
            silent_s = decision.t - (decision.silent_since or decision.t)
            await self._alert(
                decision,
                AlertKind.SIGNAL_LOST,
                f"no position from technician {decision.technician_id} for {silent_s:.0f} s"
                f" during visit {decision.booking_id}",
            )

    async def _raise_overdue(self, decision: Decision) -> None:
        timeout = self.config.check_timeout_s
        note = (
            f"visit {decision.booking_id} is overdue and technician {decision.technician_id}"
            f" did not answer {QUESTION!r} within {timeout:g} s"
        )
        incident, _ = await self.incidents.raise_system(
            kind=OVERDUE_INCIDENT,
            technician_id=decision.technician_id,
            booking_id=decision.booking_id,
            client_id=decision.key,
            note=note,
        )
        await self._alert(decision, AlertKind.VISIT_OVERDUE, note, incident_id=incident.id)

    async def _alert(
        self, decision: Decision, kind: AlertKind, message: str, incident_id: str | None = None
    ) -> None:
        alert, entry = open_alert(
            alert_id=f"alert-{decision.key}",
            kind=kind,
            t=decision.t,
            technician_id=decision.technician_id,
            booking_id=decision.booking_id,
            message=message,
            actor=ACTOR,
            incident_id=incident_id,
        )
        await self.alerts.raise_alert(alert, entry)

    async def _tell_technician(self, technician_id: str, message: wire.CheckPrompt) -> None:
        text = wire.encode(message)
        await self.bus.publish(
            technician_channel(technician_id), BusMessage(kind="check", text=text, urgent=True)
        )

    # ------------------------------------------------------------------ the technician

    async def open_checks(self, technician_id: str) -> list[wire.CheckPrompt]:
        """The technician's unanswered checks, to send again when they (re)connect."""
        watches = [await self._watch(b.id) for b in self.bookings.active_bookings_of(technician_id)]
        return [
            wire.CheckPrompt(
                id=watch.check.id,
                booking_id=watch.booking_id,
                question=QUESTION,
                t=watch.check.t,
                answer_by=watch.check.answer_by,
            )
            for watch in watches
            if watch is not None and watch.check is not None
        ]

    async def answer(self, technician_id: str, check_id: str) -> None:
        """Record the technician's "ok" durably; UnknownCheck when it is not theirs to answer."""
        for booking in self.bookings.active_bookings_of(technician_id):
            async with self.store.lock(f"watch:{booking.id}", LOCK_TTL_S):
                watch = await self._watch(booking.id)
                if watch is None or not core.knows(watch, check_id):
                    continue
                updated = core.answer_ok(watch, check_id, self.clock())
                if updated is not watch:
                    await self._save(updated)
                return
        raise UnknownCheck(f"no check {check_id!r} for you (the visit may be over)")


def _in_visit(booking: Booking) -> bool:
    return booking.status in IN_VISIT and bool(booking.technician_id) and bool(booking.arrived_t)
