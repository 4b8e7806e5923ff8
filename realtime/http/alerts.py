"""/v1/alerts: the safety alerts (a visit overdue, a signal lost, a zone left or entered)
operators acknowledge (``realtime/alerting.py``); the same as the console's ``alert_ack``."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from realtime import protocol as wire
from realtime.alerting import AlertNotFound
from realtime.auth import Role
from realtime.http.common import authenticate, handles_errors, hub_of, read_body


class AlertAckIn(msgspec.Struct, forbid_unknown_fields=True):
    note: wire.Note | None = None


@handles_errors
async def list_alerts(request: Request) -> Response:
    """The open (not yet acknowledged) safety alerts, oldest first."""
    authenticate(request, {Role.OPERATOR})
    alerts = hub_of(request).alerts.open_alerts()
    return JSONResponse({"alerts": [msgspec.to_builtins(a) for a in alerts]})


@handles_errors
async def get_alert(request: Request) -> Response:
    """One alert, open or acknowledged, with its audit trail."""
    authenticate(request, {Role.OPERATOR})
    desk = hub_of(request).alerts
    alert_id = request.path_params["alert_id"]
    alert = await desk.get(alert_id)
    if alert is None:
        raise AlertNotFound("alert does not exist")
    audit = await desk.audit(alert_id)
    return JSONResponse({**msgspec.to_builtins(alert), "audit": msgspec.to_builtins(audit)})


@handles_errors
async def ack_alert(request: Request) -> Response:
    principal = authenticate(request, {Role.OPERATOR})
    body: AlertAckIn = await read_body(request, AlertAckIn)
    alert = await hub_of(request).alerts.acknowledge(
        principal, request.path_params["alert_id"], body.note
    )
    return JSONResponse(msgspec.to_builtins(alert))
