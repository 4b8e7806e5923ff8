"""The ASGI app factory: everything is built from a Settings object, nothing at import time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from realtime import http_api, pages, ws
from realtime.backends import create_backends, create_roster
from realtime.hub import Clock, Hub
from realtime.metrics import Metrics
from realtime.settings import Settings, SettingsError
from realtime.tasks import Supervisor


def create_app(settings: Settings, clock: Clock | None = None) -> Starlette:
    """A hub app for these settings; secrets must be resolved (see ``with_secrets``)."""
    if settings.secret is None or settings.platform_key is None:
        raise SettingsError("DOORSTEP_SECRET and DOORSTEP_PLATFORM_KEY must be resolved")
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

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    app = Starlette(
        routes=[*http_api.routes, *ws.routes, *pages.routes],
        lifespan=lifespan,
        exception_handlers={
            HTTPException: http_api.http_exception_handler,
            Exception: http_api.server_error_handler,
        },
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.hub = hub
    return app
