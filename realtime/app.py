"""The ASGI app factory: everything is built from a Settings object, nothing at import time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from realtime import http_api, http_people, pages, ws
from realtime.backends import create_backends, create_roster
from realtime.hub import Clock, Hub
from realtime.metrics import Metrics
from realtime.retention import RetentionJob
from realtime.settings import Settings, SettingsError


def create_app(settings: Settings, clock: Clock | None = None) -> Starlette:
    """A hub app for these settings; secrets must be resolved (see ``with_secrets``)."""
    if settings.secret is None or settings.platform_key is None:
        raise SettingsError("DOORSTEP_SECRET and DOORSTEP_PLATFORM_KEY must be resolved")
    metrics = Metrics()
    store, bus = create_backends(settings)
    hub = Hub(
        settings,
        store,
        bus,
        metrics,
        roster=create_roster(settings),
        **({"clock": clock} if clock else {}),
    )

    retention = RetentionJob(hub)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        retention.start()
        try:
            yield
        finally:
            await retention.stop()
            await hub.stop()

    app = Starlette(
        routes=[*http_api.routes, *http_people.routes, *ws.routes, *pages.routes],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.hub = hub
    app.state.retention = retention
    return app
