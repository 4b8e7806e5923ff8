"""/healthz (the process answers), /readyz (hub, store, bus and background tasks are up:
503 with what is down otherwise) and /metrics (Prometheus). No authentication."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from realtime.http.common import hub_of


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    hub = hub_of(request)
    checks = hub.readiness()
    ok = all(checks.values())
    body: dict[str, Any] = {"status": "ready" if ok else "not_ready", "checks": checks}
    if hub.backend.store_error:
        body["store_error"] = hub.backend.store_error  # store_full or store_unavailable
    down = hub.tasks.down()
    if down:
        body["tasks_down"] = down  # which background tasks are restarting
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
