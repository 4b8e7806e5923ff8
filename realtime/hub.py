"""The hub: the composition root that builds the services and wires the fix pipeline.

Nothing here decides anything. ``Hub`` creates, from the settings and the backends, the
services that do (each given only the narrow interfaces it needs, ``realtime/ports.py``),
connects them, and starts and stops them in order. The way of a fix is
``FixPipeline`` (``realtime/pipeline.py``); every booking change goes through the
``BookingDesk`` (``realtime/bookings_desk.py``). Endpoints (``realtime/sockets/``,
``realtime/http/``) reach the services as the hub's attributes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from alerts.safety_alert import SafetyAlert
from alerts.watchdog import WatchdogConfig
from realtime.alerting import AlertDesk
from realtime.arrivals import Arrivals, RoutingEngine
from realtime.backends.base import Bus, Store
from realtime.backends.roster import MemoryRoster, Roster
from realtime.booking import Booking
from realtime.bookings_desk import BookingDesk
from realtime.cities import Cities
from realtime.cluster import Cluster, Entity
from realtime.dispatcher import Dispatcher
from realtime.erasure import Eraser
from realtime.fleet import Fleet
from realtime.history import HistoryWriter
from realtime.ingest import FixLimits
from realtime.metrics import Metrics
from realtime.notifiers import notifiers_from
from realtime.pipeline import Acks, FixPipeline
from realtime.ports import Clock
from realtime.privacy import Retention
from realtime.profiles import Profiles
from realtime.publish import Publisher
from realtime.quotes import QuoteDesk
from realtime.readiness import BackendHealth
from realtime.retention import RetentionJob
from realtime.safety import SafetyConfig, SafetyDesk
from realtime.settings import Settings
from realtime.tasks import Supervisor
from realtime.travel import TravelEstimates
from realtime.visit_ledger import VisitLedger
from realtime.watchdog import Watchdog
from realtime.zoning import Zoning

log = logging.getLogger("doorstep.hub")


class Hub:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        bus: Bus,
        metrics: Metrics,
        clock: Clock = time.time,
        roster: Roster | None = None,
        tasks: Supervisor | None = None,
    ) -> None:
        self.settings = settings
        # Every background task runs under this supervisor (restarted when it raises).
        self.tasks = tasks if tasks is not None else Supervisor()
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.clock = clock
        self.roster: Roster = roster if roster is not None else MemoryRoster()
        self.hub_id = settings.hub_id or (
            f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        # Notices to the other hubs; its handlers are set below, once the services exist.
        self.cluster = Cluster(self.hub_id, bus, {}, tasks=self.tasks)
        announce = self.cluster.announce
        spawn = self.tasks.spawn
        self.publisher = Publisher(bus)
        self.fleet = Fleet(
            hub_id=self.hub_id,
            store=store,
            bus=bus,
            roster=self.roster,
            clock=clock,
            spawn=spawn,
            interval_s=settings.fleet_interval_s,
        )
        self.profiles = Profiles(store, announce)
        self.cities = Cities(store, announce, settings.retention_booking_personal_s)
        self.visits = VisitLedger(store)
        self.bookings = BookingDesk(
            store=store,
            publisher=self.publisher,
            announce=announce,
            clock=clock,
            fleet=self.fleet,
            visits=self.visits,
            metrics=metrics,
        )
        self.alerts = AlertDesk(
            store=store, bus=bus, announce=announce, metrics=metrics, clock=clock
        )
        self.arrivals = Arrivals(
            store=store,
            publisher=self.publisher,
            bookings=self.bookings,
            metrics=metrics,
            arriving_threshold_s=settings.arriving_threshold_s,
            routing=(
                RoutingEngine(settings.osrm_url, settings.osrm_timeout_s, settings.osrm_refresh_s)
                if settings.osrm_url
                else None
            ),
            spawn=spawn,
            models_reload_s=settings.models_reload_interval_s,
        )
        self.bookings.on_change(self.arrivals.booking_changed)
        # The console's fleet entries: each technician's name and what they are doing.
        self.fleet.describe_with(self.profiles, self.bookings)
        self.bookings.on_change(self.fleet.visit_changed)
        # Route distance and time as the customer's ETA would say (dispatch, quotes).
        self.travel = TravelEstimates(self.arrivals)
        self.quotes = QuoteDesk(
            store=store,
            cities=self.cities,
            travel=self.travel,
            clock=clock,
            unwritten=lambda technician_id, t_from, t_to: self.history.pending_of(
                technician_id, t_from, t_to
            ),
        )
        self.bookings.after_check_in(self._record_driven)
        self.alerts.audience_of = self._alert_audience
        self.zoning = Zoning(
            store=store, announce=announce, bookings=self.bookings, alerts=self.alerts
        )
        self.dispatcher = Dispatcher(
            bookings=self.bookings,
            fleet=self.fleet,
            profiles=self.profiles,
            roster=self.roster,
            cities=self.cities,
            zoning=self.zoning,
            visits=self.visits,
            travel=self.travel,
            clock=clock,
        )
        self.safety = SafetyDesk(
            config=SafetyConfig(
                escalation_t1_s=settings.escalation_t1_s,
                escalation_t2_s=settings.escalation_t2_s,
                max_future_skew_s=settings.max_future_skew_s,
                customer_sos_grace_s=settings.customer_sos_grace_s,
                sos_cancel_grace_s=settings.sos_cancel_grace_s,
                work_reclaim_idle_s=settings.work_reclaim_idle_s,
            ),
            notifiers=notifiers_from(settings),
            hub_id=self.hub_id,
            store=store,
            bus=bus,
            announce=announce,
            bookings=self.bookings,
            fleet=self.fleet,
            profiles=self.profiles,
            cities=self.cities,
            metrics=metrics,
            spawn=spawn,
            clock=clock,
        )
        self.watchdog = Watchdog(
            config=WatchdogConfig(
                overdue_margin_s=settings.overdue_margin_s,
                check_timeout_s=settings.check_timeout_s,
                recheck_after_ok_s=settings.recheck_after_ok_s,
                signal_lost_s=settings.signal_lost_s,
            ),
            interval_s=settings.watchdog_interval_s,
            hub_id=self.hub_id,
            store=store,
            bus=bus,
            bookings=self.bookings,
            fleet=self.fleet,
            alerts=self.alerts,
            incidents=self.safety,
            spawn=spawn,
            clock=clock,
        )
        self.history = HistoryWriter(
            store,
            interval=settings.history_flush_interval_s,
            max_batch=settings.history_flush_max,
            pending_limit=settings.history_pending_limit,
            on_durable=Acks(self.fleet, self.publisher).on_durable,
            metrics=metrics,
            tasks=self.tasks,
        )
        self.pipeline = FixPipeline(
            fleet=self.fleet,
            history=self.history,
            publisher=self.publisher,
            bookings=self.bookings,
            limits=FixLimits(
                max_future_skew_s=settings.max_future_skew_s,
                max_fix_age_s=settings.max_fix_age_s,
                max_batch_points=settings.max_batch_points,
            ),
            metrics=metrics,
            clock=clock,
            # In this order: zones (alerts), the trail of open incidents, then arrivals.
            consumers=[self.zoning, self.safety, self.arrivals],
        )
        self.eraser = Eraser(
            store=store,
            roster=self.roster,
            fleet=self.fleet,
            profiles=self.profiles,
            visits=self.visits,
            quotes=self.quotes,
            announce=announce,
            clock=clock,
        )
        self.retention = RetentionJob(
            retention=Retention(
                history_s=settings.retention_history_s,
                incidents_s=settings.retention_incidents_s,
                booking_personal_s=settings.retention_booking_personal_s,
            ),
            interval_s=settings.retention_interval_s,
            store=store,
            roster=self.roster,
            memory=self.fleet,
            clock=clock,
            bookings_by_city=self.cities,
            purge_quotes=self.quotes.purge_expired,
        )
        self.cluster.handlers.update(
            {
                Entity.BOOKING: self.bookings.refresh,
                Entity.INCIDENT: self.safety.refresh,
                Entity.ALERT: self.alerts.refresh,
                Entity.ZONES: lambda _: self.zoning.load(),
                Entity.PROFILE: self.profiles.refresh,
                Entity.CITY: self.cities.refresh,
                Entity.POSITION_ERASED: self._forget_erased_position,
            }
        )
        self.backend = BackendHealth(store, bus, self.tasks)
        self.ready = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.store.open()
        await self.bus.connect()
        await self.roster.open()
        await self.arrivals.load()
        self.arrivals.start()
        # Subscribed before the mirrors are read: a change made meanwhile by another hub is
        # applied after the read, never lost between the two.
        self.cluster.start()
        await self.bus.wait_synced()
        self.bus.on_resync(self.resync)
        await self._load_mirrors()
        await self.safety.start()
        await self.watchdog.load()  # after the bookings: it watches the visits among them
        self.history.start()
        self.fleet.start()
        self.backend.start()
        self.ready = True

    async def _load_mirrors(self) -> None:
        """Read from the store everything this hub serves from memory."""
        await self.zoning.load()
        await self.alerts.load()
        await self.safety.load()
        await self.profiles.load()
        await self.cities.load()
        await self.bookings.load()

    async def resync(self) -> None:
        """After the bus reconnected: notices from other hubs may be lost, read it all again."""
        log.info("hub %s: re-reading its mirrors after a reconnect", self.hub_id)
        await self._load_mirrors()

    def _alert_audience(self, alert: SafetyAlert) -> str | None:
        """The operator group of the alert's booking's city (None: every operator)."""
        booking = self.bookings.cached(alert.booking_id)
        return self.cities.of(booking.city if booking else None).operator_group

    async def _record_driven(self, booking: Booking) -> None:
        """After a check-in: the distance the track covered, beside a quoted one."""
        driven = await self.quotes.driven_to_door(booking)
        if driven is not None:
            await self.bookings.annotate(booking.id, driven_m=driven)

    async def _forget_erased_position(self, technician_id: str) -> None:
        self.fleet.forget_position(technician_id)

    async def stop(self) -> None:
        self.ready = False
        # The bookkeeping that follows stored check-ins, while the store is still open.
        await self.bookings.afterwards.drain()
        await self.arrivals.afterwards.drain()
        await self.backend.stop()
        await self.cluster.stop()
        await self.fleet.stop()
        await self.watchdog.close()
        await self.arrivals.close()
        await self.safety.close()
        await self.history.stop()
        await self.bus.disconnect()
        await self.roster.close()
        await self.store.close()

    def readiness(self) -> dict[str, bool]:
        """What /readyz reports and the ``doorstep_ready_check`` gauges show: one list."""
        return {
            "hub": self.ready,
            "history_writer": self.history.healthy,
            "store": self.backend.store_ok,
            "bus": self.backend.bus_ok,
            "tasks": self.backend.tasks_ok,
        }

    @property
    def healthy(self) -> bool:
        return self.ready and self.history.healthy and self.backend.ok
