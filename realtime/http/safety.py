"""/v1/sos and /v1/incidents: the HTTP side of SOS.

A reporter (technician or customer) raises, reads and cancels their own SOS here when the
socket is not at hand; operators list, acknowledge and resolve the incidents. As on the
socket, an SOS is answered 201 only once it is stored.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alerts.incident import IncidentAction, Outcome
from realtime import protocol as wire
from realtime.auth import Role
from realtime.bookings_desk import NotFound
from realtime.http.common import (
    ApiError,
    Endpoint,
    authenticate,
    handles_errors,
    hub_of,
    read_body,
)
from realtime.protocol import ErrorCode, ProtocolError
from realtime.safety import reporter_key

log = logging.getLogger("doorstep.http")

REPORTERS = {Role.TECHNICIAN, Role.CUSTOMER}


class SosIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``POST /v1/sos``: the same fields as the socket's ``sos`` (``type`` optional)."""

    id: wire.ClientId
    t: float
    lat: float | None = None
    lon: float | None = None
    acc: float | None = None
    note: wire.Note | None = None
    type: str | None = None


class IncidentActIn(msgspec.Struct, forbid_unknown_fields=True):
    note: wire.Note | None = None
    outcome: Outcome | None = None


@handles_errors
async def post_sos(request: Request) -> Response:
    """The HTTP fallback for SOS: 201 only once stored; a retry of the same id answers 200."""
    principal = authenticate(request, REPORTERS)
    body: SosIn = await read_body(request, SosIn)
    sos = wire.Sos(id=body.id, t=body.t, lat=body.lat, lon=body.lon, acc=body.acc, note=body.note)
    try:
        incident, created = await hub_of(request).safety.raise_sos(principal, sos)
    except ProtocolError:
        raise
    except Exception:
        log.exception("SOS %s could not be stored", body.id)
        raise ApiError(
            503, ErrorCode.SOS_NOT_STORED, f"SOS {body.id} was not stored; retry now"
        ) from None
    return JSONResponse(
        {"id": body.id, "incident": incident.id, "status": incident.status.value},
        status_code=201 if created else 200,
    )


@handles_errors
async def cancel_sos(request: Request) -> Response:
    principal = authenticate(request, REPORTERS)
    body: IncidentActIn = await read_body(request, IncidentActIn)
    del body  # a cancel carries no outcome; the note is optional and unused for now
    incident = await hub_of(request).safety.cancel_by_client_id(
        principal, request.path_params["sos_id"]
    )
    return JSONResponse(_sos_status(incident))


@handles_errors
async def get_sos(request: Request) -> Response:
    """What a reporter may see of their own SOS: its state, not the operators' notes."""
    principal = authenticate(request, REPORTERS)
    desk = hub_of(request).safety
    key = reporter_key(principal.role.value, principal.sub, request.path_params["sos_id"])
    incident = await hub_of(request).store.incident_by_reporter_key(key)
    if incident is not None:
        incident = await desk.get(incident.id) or incident
    if incident is None:
        raise NotFound("no SOS with this id from you")
    return JSONResponse(_sos_status(incident))


def _sos_status(incident: Any) -> dict[str, Any]:
    return {
        "id": incident.client_id,
        "incident": incident.id,
        "status": incident.status.value,
        "outcome": incident.outcome.value if incident.outcome else None,
        "t": incident.updated_t,
    }


@handles_errors
async def list_incidents(request: Request) -> Response:
    principal = authenticate(request, {Role.OPERATOR})
    safety = hub_of(request).safety
    incidents = [i for i in safety.open_incidents() if safety.visible_to(principal, i)]
    return JSONResponse({"incidents": [msgspec.to_builtins(i) for i in incidents]})


@handles_errors
async def get_incident(request: Request) -> Response:
    principal = authenticate(request, {Role.OPERATOR})
    safety = hub_of(request).safety
    incident = await safety.get(request.path_params["incident_id"])
    if incident is None or not safety.visible_to(principal, incident):
        raise NotFound("incident does not exist")
    return JSONResponse(msgspec.to_builtins(incident))


def incident_action(action: IncidentAction) -> Endpoint:
    """The operator's endpoint applying ``action`` (ack, resolve) to an incident."""

    @handles_errors
    async def endpoint(request: Request) -> Response:
        principal = authenticate(request, {Role.OPERATOR})
        body: IncidentActIn = await read_body(request, IncidentActIn)
        incident = await hub_of(request).safety.act(
            principal,
            request.path_params["incident_id"],
            action,
            note=body.note,
            outcome=body.outcome,
        )
        return JSONResponse(msgspec.to_builtins(incident))

    return endpoint
