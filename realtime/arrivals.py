"""Arrival intelligence wired into the hub: ETAs out, check-in/out into the booking lifecycle.

One ``ArrivalTracker`` (pure, ``geofence/arrival.py``) per booking that is on its way or in
a visit. This module feeds it the technician's fixes, publishes ``eta`` messages to the
booking's watchers, and turns its decisions into booking transitions: ``approach`` when the
ETA drops under the threshold, ``check_in`` at the real arrival time, ``check_out`` at the
real departure time. Completed approaches teach the circuity and travel time models and the
ETA's error bands, which are persisted as documents (the last hub to learn writes the whole
model), and the speed model by area and hour (``geofence/eta_speeds.py``), which is kept as
additive counters: each hub adds what its trips taught (``Store.add_counters``) and reads
the merged totals of every hub back at start and every ``models_reload_s``.

A decision is not done until it is stored. The tracker's decisions for a booking wait in
an ordered queue (approach, check-in, check-out) and leave it only once their transition is
written; a failed write is retried in the background with backoff, and at once on the
technician's next fix, until it succeeds or the booking ends another way (cancelled). So a
store failure at check-in delays the status, never loses it: the booking still reaches
``arrived`` and ``completed`` with the real crossing times, and the customer stops seeing
the technician after check-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

import msgspec
import tenacity

from geofence.arrival import ArrivalConfig, ArrivalTracker, ArrivalUpdate
from geofence.eta import Eta, EtaConfig, StraightLineProvider
from geofence.eta_band import ErrorBands
from geofence.eta_models import CircuityModel, TravelTimeModel
from geofence.eta_speeds import SpeedModel
from geofence.fences import CircleFence, Fence, fence_from_geojson
from geofence.model import Fix
from realtime import protocol as wire
from realtime.aio import Afterwards, stop_tasks
from realtime.backends.base import Store
from realtime.booking import Booking, BookingEvent, BookingStatus, IllegalTransition
from realtime.eta_accuracy import ShownEta, ShownEtas
from realtime.eta_throttle import EtaShown, EtaThrottle
from realtime.metrics import Metrics
from realtime.ports import AcceptedFixes, BookingCommands, Spawn
from realtime.positions import plain_fix
from realtime.publish import Publisher
from realtime.routing import CachedRoute, OsrmRouter

log = logging.getLogger("doorstep.arrivals")

S = BookingStatus
TRACKED = frozenset({S.EN_ROUTE, S.ARRIVING, S.ARRIVED, S.IN_SERVICE})
MODELS = "models"
CIRCUITY_KEY = "circuity"
TRAVEL_TIMES_KEY = "travel_times"
ERROR_BANDS_KEY = "eta_error_bands"
SPEEDS_KEY = "eta_speeds"  # counters, not a document: see the module docstring
HUB_ACTOR = "hub:arrivals"
# Backoff between retries of a decision whose write failed: soon after a blip, at most this
# rarely during an outage (a technician's fix retries at once anyway).
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0


@dataclass(frozen=True)
class Decision:
    """A booking transition the tracker decided, waiting until it is stored."""

    event: BookingEvent  # APPROACH, CHECK_IN or CHECK_OUT
    cause: str
    t: float | None = None  # when it really happened (check-in/out); None: when written


def decisions_of(update: ArrivalUpdate, arriving_threshold_s: float) -> list[Decision]:
    """What one tracker update asks of the booking, in order. Pure."""
    decisions = []
    if update.approaching and update.eta is not None:
        cause = f"ETA {update.eta.seconds:.0f} s, under {arriving_threshold_s:g} s"
        decisions.append(Decision(BookingEvent.APPROACH, cause))
    for event in update.events:
        cause = f"{event.cause} (decided at {event.decided_t:.1f})"
        kind = BookingEvent.CHECK_IN if event.kind == "check_in" else BookingEvent.CHECK_OUT
        decisions.append(Decision(kind, cause, event.t))
    return decisions


def booking_fence(booking: Booking) -> Fence:
    """The booking's own polygon when it has one, else the circle around the destination."""
    if booking.fence is not None:
        return fence_from_geojson(booking.fence)
    return CircleFence(booking.destination.lat, booking.destination.lon, booking.geofence_radius_m)


@dataclass(frozen=True)
class RoutingEngine:
    """Where an optional OSRM-compatible routing engine is, and how it is used."""

    url: str
    timeout_s: float
    refresh_s: float


class Arrivals:
    def __init__(
        self,
        *,
        store: Store,
        publisher: Publisher,
        bookings: BookingCommands,
        metrics: Metrics,
        arriving_threshold_s: float,
        routing: RoutingEngine | None = None,
        spawn: Spawn | None = None,
        models_reload_s: float = 60.0,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.bookings = bookings
        self.metrics = metrics
        self.config = ArrivalConfig(arriving_threshold_s=arriving_threshold_s)
        self.circuity = CircuityModel()
        self.provider = StraightLineProvider(self.circuity)
        self.travel_times = TravelTimeModel(self.config.eta.prior_speed_mps)
        self.error_bands = ErrorBands()
        # One object for the hub's life: a reload replaces its totals in place, so trackers
        # already running use the merged speeds from then on.
        self.speeds = SpeedModel(self.config.eta.prior_speed_mps)
        self.spawn = spawn
        self.models_reload_s = models_reload_s
        self._reload_task: asyncio.Task[None] | None = None
        self._trackers: dict[str, ArrivalTracker] = {}
        self._last_eta: dict[str, wire.EtaMessage] = {}
        self._eta_shown: dict[str, EtaShown] = {}  # what each booking's customer was sent
        # What they were sent during the approach, scored at the arrival (the metrics).
        self._shown_etas: dict[str, ShownEtas] = {}
        # Each arrival's ETA score, written to its booking after the check-in is stored.
        self._eta_summaries: dict[str, dict[str, object]] = {}
        self.afterwards = Afterwards(log)
        self.eta_throttle = EtaThrottle()
        self.routing = routing
        self.router = (
            OsrmRouter(routing.url, timeout_s=routing.timeout_s) if routing is not None else None
        )
        self._routes: dict[str, CachedRoute] = {}
        self._route_tasks: dict[str, asyncio.Task[None]] = {}
        # When the engine last failed per booking: no retry before osrm_refresh_s has passed,
        # so a dead engine costs one timed-out call per booking per refresh period.
        self._route_failed_t: dict[str, float] = {}
        # Decided but not yet stored, per booking, in order (see the module docstring).
        self._pending: dict[str, deque[Decision]] = {}
        # One writer of a booking's decisions at a time (a fix, or the retry task).
        self._write_locks: dict[str, asyncio.Lock] = {}
        self._retry_tasks: dict[str, asyncio.Task[None]] = {}
        self._retry_now: dict[str, asyncio.Event] = {}

    async def load(self) -> None:
        stored = await self.store.get_document(MODELS, CIRCUITY_KEY)
        if stored is not None:
            self.circuity = CircuityModel.from_dict(msgspec.json.decode(stored))
            self.provider = StraightLineProvider(self.circuity)
        stored = await self.store.get_document(MODELS, TRAVEL_TIMES_KEY)
        if stored is not None:
            self.travel_times = TravelTimeModel.from_dict(msgspec.json.decode(stored))
        stored = await self.store.get_document(MODELS, ERROR_BANDS_KEY)
        if stored is not None:
            self.error_bands = ErrorBands.from_dict(msgspec.json.decode(stored))
        await self.reload_speeds()

    async def reload_speeds(self) -> None:
        """Take the merged speed totals of every hub from the store.

        A trip this hub learns while the read is in flight may be missing from what it
        returns (added after the read) and is then absent here until the next reload; it is
        in the store either way, so nothing is lost, only seen a period late.
        """
        self.speeds.replace(await self.store.get_counters(MODELS, SPEEDS_KEY))

    def start(self) -> None:
        """Reload the merged speeds every ``models_reload_s`` (under the hub's supervisor)."""
        if self.spawn is not None and self._reload_task is None:
            self._reload_task = self.spawn("doorstep-arrival-models", self._reload_loop)  # type: ignore[assignment]

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.models_reload_s)
            try:
                await self.reload_speeds()
            except Exception:
                # A store away is no reason to restart the task (nor to mark the hub not
                # ready): the ETA keeps the totals it has, the next period reads again.
                log.warning(
                    "speed model not reloaded; retried in %g s",
                    self.models_reload_s,
                    exc_info=True,
                )

    async def close(self) -> None:
        reload, self._reload_task = self._reload_task, None
        await stop_tasks([reload, *self._route_tasks.values(), *self._retry_tasks.values()])
        if self.router is not None:
            await self.router.aclose()

    def booking_changed(self, booking: Booking) -> None:
        """Start tracking when the technician sets off; stop when the visit is over."""
        if booking.status not in TRACKED or booking.technician_id is None:
            self._trackers.pop(booking.id, None)
            self._last_eta.pop(booking.id, None)
            self._eta_shown.pop(booking.id, None)
            self._shown_etas.pop(booking.id, None)
            self._routes.pop(booking.id, None)
            self._route_failed_t.pop(booking.id, None)
            # Over (checked out, cancelled): nothing left to write. The retry task, if any,
            # sees the queue gone and ends; not cancelled here, since this may run inside
            # its own write (the check-out it just stored).
            self._pending.pop(booking.id, None)
            self._write_locks.pop(booking.id, None)
            wake = self._retry_now.get(booking.id)
            if wake is not None:
                wake.set()
            task = self._route_tasks.pop(booking.id, None)
            if task is not None:
                task.cancel()
            return
        if booking.id in self._trackers:
            if booking.status in (S.ARRIVED, S.IN_SERVICE):
                self._last_eta.pop(booking.id, None)
            return
        self._trackers[booking.id] = ArrivalTracker(
            booking.destination.lat,
            booking.destination.lon,
            booking_fence(booking),
            self.provider,
            self.config,
            inside=booking.status in (S.ARRIVED, S.IN_SERVICE),
            approached=booking.status is not S.EN_ROUTE,
            travel_times=self.travel_times,
            error_bands=self.error_bands,
            speeds=self.speeds,
        )

    def eta_of(self, booking_id: str) -> wire.EtaMessage | None:
        return self._last_eta.get(booking_id)

    async def on_fixes(self, accepted: AcceptedFixes) -> None:
        """Only the visit in progress: the next booking's ETA and arrival wait for its
        en_route (its tracker starts then)."""
        if accepted.visit is not None and accepted.visit.id in self._trackers:
            fixes = [plain_fix(fix) for fix in accepted.fixes]
            await self.feed(accepted.technician_id, [accepted.visit.id], fixes)

    async def feed(self, technician_id: str, booking_ids: list[str], fixes: list[Fix]) -> None:
        """Feed a technician's new fixes (time order) to the trackers of their bookings."""
        for booking_id in booking_ids:
            tracker = self._trackers.get(booking_id)
            if tracker is None:
                continue
            updates = [tracker.update(fix, self._routed_distance(booking_id, fix)) for fix in fixes]
            trips = [u for u in updates if u.trip is not None]
            for update in trips:
                # Before the writes below: a check-out in the same batch ends the booking,
                # and with it what its customer was shown.
                if update.trip is not None and update.trip.arrived_t is not None:
                    self._score_shown_etas(booking_id, update.trip.arrived_t)
            latest = next((u for u in reversed(updates) if u.eta is not None), None)
            if latest is not None and latest.eta is not None and not tracker.checked_in:
                await self._publish_eta(booking_id, fixes[-1].t, latest.eta, latest.at_door)
            threshold = self.config.arriving_threshold_s
            decided = [d for u in updates for d in decisions_of(u, threshold)]
            if decided:
                self._pending.setdefault(booking_id, deque()).extend(decided)
                if any(d.event is BookingEvent.CHECK_IN for d in decided):
                    self._last_eta.pop(booking_id, None)  # here: no ETA, stored or not
            if booking_id in self._pending:
                await self._write_or_retry(booking_id)
            for update in trips:
                await self._learn(booking_id, update)

    def pending(self, booking_id: str) -> list[Decision]:
        """Decisions not yet stored (a store failure), oldest first."""
        return list(self._pending.get(booking_id, ()))

    async def _write_or_retry(self, booking_id: str) -> None:
        """Store the booking's pending decisions now; on failure hand them to a retry task.

        While a retry task exists the fix only wakes it: a failing store then costs the
        technician's ingest one attempt, not one per fix.
        """
        wake = self._retry_now.get(booking_id)
        if wake is not None:
            wake.set()
            return
        if await self._write_pending(booking_id):
            return
        # Another fix may have started a retry task while this one awaited the store.
        if booking_id in self._pending and booking_id not in self._retry_tasks:
            self._retry_now[booking_id] = asyncio.Event()
            self._retry_tasks[booking_id] = asyncio.create_task(
                self._retry(booking_id), name=f"doorstep-arrival-retry-{booking_id}"
            )

    async def _retry(self, booking_id: str) -> None:
        """Retry with exponential backoff until stored or the booking is over; a new fix
        of the technician cuts the wait short."""
        wake = self._retry_now[booking_id]

        async def wait_or_wake(delay: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)
            wake.clear()

        retrying = tenacity.AsyncRetrying(
            # Until written or the queue is gone (the booking ended another way).
            retry=tenacity.retry_if_result(lambda done: not done),
            # 0.2, 0.4, 0.8 ... s after the first wait of RETRY_FIRST_S.
            wait=tenacity.wait_exponential(multiplier=2 * RETRY_FIRST_S, max=RETRY_MAX_S),
            sleep=wait_or_wake,
        )
        try:
            await wait_or_wake(RETRY_FIRST_S)
            await retrying(self._write_pending, booking_id)
        finally:
            self._retry_tasks.pop(booking_id, None)
            self._retry_now.pop(booking_id, None)

    async def _write_pending(self, booking_id: str) -> bool:
        """Write the pending decisions in order; True when none is left (all stored, or the
        booking ended), False at the first that failed (it stays first in the queue)."""
        lock = self._write_locks.setdefault(booking_id, asyncio.Lock())
        async with lock:
            while True:
                # Read again each time: the awaits below may end the booking, and
                # booking_changed then drops its queue (nothing left to write).
                queue = self._pending.get(booking_id)
                if not queue:
                    self._pending.pop(booking_id, None)
                    return True
                decision = queue[0]
                try:
                    await self._write(booking_id, decision)
                except Exception:
                    log.warning(
                        "arrival decision %s for booking %s not stored yet; retrying",
                        decision.event.value,
                        booking_id,
                        exc_info=True,
                    )
                    return False
                if queue and queue[0] is decision:
                    queue.popleft()

    @property
    def eta_config(self) -> EtaConfig:
        return self.config.eta

    def _routed_distance(self, booking_id: str, fix: Fix) -> float | None:
        """The routing engine's distance, scaled to this fix; None: use the default provider.

        The engine is never awaited here: a refresh runs in the background (one at a time
        per booking) and later fixes use it once it is in.
        """
        if self.router is None or self.routing is None:
            return None
        tracker = self._trackers[booking_id]
        route = self._routes.get(booking_id)
        if route is None:
            route = self._routes[booking_id] = CachedRoute(
                tracker.dest_lat, tracker.dest_lon, refresh_s=self.routing.refresh_s
            )
        busy = booking_id in self._route_tasks
        failed_t = self._route_failed_t.get(booking_id)
        backing_off = failed_t is not None and fix.t - failed_t < route.refresh_s
        if (
            not busy
            and not backing_off
            and not tracker.checked_in
            and route.needs_refresh(fix.t, fix.lat, fix.lon)
        ):
            self._route_tasks[booking_id] = asyncio.create_task(
                self._refresh_route(booking_id, route, fix)
            )
        return route.distance_m(fix.lat, fix.lon)

    async def _refresh_route(self, booking_id: str, route: CachedRoute, fix: Fix) -> None:
        assert self.router is not None
        try:
            metres = await self.router.route_distance_m(
                fix.lat, fix.lon, route.dest_lat, route.dest_lon
            )
            if metres is not None:
                route.store(fix.t, fix.lat, fix.lon, metres)
                self._route_failed_t.pop(booking_id, None)
            else:
                self._route_failed_t[booking_id] = fix.t
                self.metrics.routing_fallbacks.inc()
        finally:
            self._route_tasks.pop(booking_id, None)

    async def _publish_eta(self, booking_id: str, t: float, eta: Eta, at_door: bool) -> None:
        """Keep the newest estimate for snapshots; send it when the customer would see the
        difference (``realtime/eta_throttle.py``)."""
        message = wire.EtaMessage(
            booking_id=booking_id,
            t=t,
            seconds=round(eta.seconds, 1),
            arrival_t=round(eta.arrival_t, 1),
            distance_m=round(eta.distance_m, 1),
            low_s=round(eta.low_s, 1),
            high_s=round(eta.high_s, 1),
            at_door=at_door,
        )
        self._last_eta[booking_id] = message
        shown = EtaShown(
            t=t,
            arrival_t=eta.arrival_t,
            low_t=t + eta.low_s,
            high_t=t + eta.high_s,
            at_door=at_door,
        )
        if self.eta_throttle.worth_sending(self._eta_shown.get(booking_id), shown):
            self._eta_shown[booking_id] = shown
            self._shown_etas.setdefault(booking_id, ShownEtas()).shown(
                ShownEta(t=t, arrival_t=eta.arrival_t, low_t=shown.low_t, high_t=shown.high_t)
            )
            await self.publisher.eta(message)

    def _score_shown_etas(self, booking_id: str, arrived_t: float) -> None:
        """At the real arrival: how far each shown arrival time was, whether its range held.
        Once per approach (a later one, after a check-out, is scored afresh)."""
        shown = self._shown_etas.pop(booking_id, None)
        if shown is None:
            return
        scores = shown.score(arrived_t)
        for scored in scores:
            self.metrics.eta_error.labels(horizon=scored.horizon).observe(scored.error_s)
            held = "yes" if scored.held else "no"
            self.metrics.eta_ranges.labels(horizon=scored.horizon, held=held).inc()
        if scores:
            # Kept on the booking once the check-in is stored, for GET /v1/stats.
            self._eta_summaries[booking_id] = {
                "eta_scored": len(scores),
                "eta_mae_s": round(sum(s.error_s for s in scores) / len(scores), 1),
                "eta_range_held": round(sum(s.held for s in scores) / len(scores), 4),
            }

    async def _write(self, booking_id: str, decision: Decision) -> None:
        """Store one decision; raises when the store fails. Idempotent: each transition is
        made only from the statuses it belongs to, so a retry after a partial write (start
        stored, check-out not) does the rest and nothing twice."""
        if decision.event is BookingEvent.APPROACH:
            await self._transition(booking_id, decision.event, {S.EN_ROUTE}, decision.cause)
        elif decision.event is BookingEvent.CHECK_IN:
            await self._transition(
                booking_id, decision.event, {S.EN_ROUTE, S.ARRIVING}, decision.cause, decision.t
            )
            summary = self._eta_summaries.pop(booking_id, None)
            if summary is not None:
                # Not awaited: the check-in is stored; a failure here only costs the
                # statistics this arrival's score, and must not delay the next decision.
                self.afterwards.run(
                    f"keeping the ETA score of {booking_id}",
                    self.bookings.annotate(booking_id, **summary),
                )
        else:
            booking = await self.bookings.get_booking(booking_id)
            if booking is not None and booking.status is S.ARRIVED:
                # Left without anyone pressing "start": the visit still happened.
                await self._transition(
                    booking_id,
                    BookingEvent.START_SERVICE,
                    {S.ARRIVED},
                    "implicit: checked out before an explicit start",
                    booking.arrived_t,
                )
            await self._transition(
                booking_id, BookingEvent.CHECK_OUT, {S.IN_SERVICE}, decision.cause, decision.t
            )

    async def _transition(
        self,
        booking_id: str,
        event: BookingEvent,
        allowed: set[BookingStatus],
        cause: str,
        t: float | None = None,
    ) -> None:
        booking = await self.bookings.get_booking(booking_id)
        if booking is None or booking.status not in allowed:
            return
        try:
            await self.bookings.transition(booking_id, event, HUB_ACTOR, cause=cause, t=t)
        except IllegalTransition as exc:
            # A platform call changed the booking between our check and the transition.
            log.info("arrival decision dropped: %s", exc)

    async def _learn(self, booking_id: str, update: ArrivalUpdate) -> None:
        """Teach the models; a failed write is logged (the next trip teaches again), never
        an error for the technician's fix."""
        try:
            await self._learn_from(booking_id, update)
        except Exception:
            log.warning("models not updated from booking %s", booking_id, exc_info=True)

    async def _learn_from(self, booking_id: str, update: ArrivalUpdate) -> None:
        booking = await self.bookings.get_booking(booking_id)
        trip = update.trip
        if booking is None or trip is None:
            return
        self.circuity.observe(
            trip.origin_lat,
            trip.origin_lon,
            booking.destination.lat,
            booking.destination.lon,
            trip.driven_m,
        )
        await self.store.put_document(
            MODELS, CIRCUITY_KEY, msgspec.json.encode(self.circuity.to_dict())
        )
        increments = self.speeds.tally(trip.track)
        if increments:
            # Stored first, then learned here: what this hub knows is what the store holds
            # (if the write fails, the trip is learned by no hub rather than by this one).
            await self.store.add_counters(MODELS, SPEEDS_KEY, increments)
            self.speeds.add(increments)
        if trip.arrived_t is None:
            return
        if self.travel_times.observe(trip.samples, trip.arrived_t):
            await self.store.put_document(
                MODELS, TRAVEL_TIMES_KEY, msgspec.json.encode(self.travel_times.to_dict())
            )
        if self.error_bands.observe(trip.eta_samples, trip.arrived_t):
            await self.store.put_document(
                MODELS, ERROR_BANDS_KEY, msgspec.json.encode(self.error_bands.to_dict())
            )
