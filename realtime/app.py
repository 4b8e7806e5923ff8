"""The ASGI app factory: everything is built from a Settings object, nothing at import time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from realtime import gc_tuning, pages
from realtime.auth import Keyring
from realtime.backend_factory import create_backends, create_roster
from realtime.gc_tuning import PauseWatch, parse_thresholds
from realtime.http import exception_handlers
from realtime.http import routes as http_routes
from realtime.hub import Hub
from realtime.live_figures import live_figures
from realtime.metrics import LiveFigures, Metrics
from realtime.ports import Clock
from realtime.revocation import TokenGuard
from realtime.settings import Settings, SettingsError
from realtime.sockets.asgi import SocketsFirstApp
from realtime.sockets.routes import routes as socket_routes
from realtime.tasks import Supervisor


def create_app(
    settings: Settings, clock: Clock | None = None, *, tune_gc: bool = False
) -> Starlette:
    """A hub app for these settings; secrets must be resolved (see ``with_secrets``).

    ``tune_gc`` applies the settings' garbage-collector choice once the hub has started:
    it is process-wide, so only ``doorstep serve`` asks for it, not tests running many hubs.
    """
    if settings.secret is None or settings.platform_key is None:
        raise SettingsError("DOORSTEP_SECRET and DOORSTEP_PLATFORM_KEY must be resolved")
    try:
        keyring = Keyring(
            settings.secret.get_secret_value(),
            issuer=settings.token_issuer,
            audience=settings.token_audience,
        )
    except ValueError as exc:  # a secret that bypassed validation (secrets.json edited)
        raise SettingsError(f"invalid setting DOORSTEP_SECRET: {exc}") from None
    metrics = Metrics()
    # One supervisor for every background task of this hub, the backends' included: a task
    # that raises is restarted and counted, and /readyz answers 503 while it is down.
    tasks = Supervisor(on_restart=lambda name: metrics.task_restarts.labels(task=name).inc())
    store, bus = create_backends(settings, tasks)
    hub = Hub(
        settings,
        store,
        bus,
        metrics,
        roster=create_roster(settings),
        tasks=tasks,
        **({"clock": clock} if clock else {}),
    )

    metrics.read_live(lambda: _live_figures(hub))
    retention = hub.retention
    tokens = TokenGuard(store, bus, hub.clock)

    pauses = PauseWatch(metrics.gc_pause_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pauses.install()
        await hub.start()
        retention.start()
        try:
            await tokens.start()  # after the hub opened the store and the bus
            if tune_gc:
                gc_tuning.tune(parse_thresholds(settings.gc_thresholds), freeze=settings.gc_freeze)
            try:
                yield
            finally:
                await tokens.stop()
        finally:
            await retention.stop()
            await hub.stop()
            pauses.remove()

    app = SocketsFirstApp(
        routes=[*http_routes, *pages.routes],
        sockets=socket_routes,
        lifespan=lifespan,
        exception_handlers=exception_handlers,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.hub = hub
    app.state.retention = retention
    app.state.keyring = keyring  # signing keys (realtime/auth.py)
    app.state.tokens = tokens  # revocations and open sockets (realtime/revocation.py)
    return app


def _live_figures(hub: Hub) -> LiveFigures:
    """The scrape-time gauges from the hub's mirrors (realtime/live_figures.py)."""
    return live_figures(
        bookings=hub.bookings.active_bookings(),
        incidents=hub.safety.open_incidents(),
        technicians_connected=len(hub.fleet.connected_here()),
        now=hub.clock(),
        # The checks of /readyz (realtime/http/health.py), as gauges for the alert rules.
        ready_checks=hub.readiness(),
        # Only the Redis bus can lose a publish (the in-process one has no queue to fill).
        bus_dropped=getattr(hub.bus, "dropped", 0),
    )
