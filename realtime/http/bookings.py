"""/v1/bookings: create and read a booking, move it through its lifecycle, dispatch it.

The lifecycle itself is the pure core in ``realtime/booking.py``; these endpoints validate
the request, check who asks, and hand the command to the hub.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from geofence.fences import fence_from_geojson
from realtime.auth import Role
from realtime.booking import BookingEvent, Destination
from realtime.bookings_desk import BookingSpec, NotFound
from realtime.dispatch import Ranked
from realtime.http.common import (
    BOOKING_ADMINS,
    ApiError,
    Endpoint,
    Identifier,
    authenticate,
    handles_errors,
    hub_of,
    read_body,
)
from realtime.ingest import check_coordinates
from realtime.protocol import ErrorCode
from realtime.publish import public_booking


class DestinationIn(msgspec.Struct, forbid_unknown_fields=True):
    lat: float
    lon: float


class BookingCreateIn(msgspec.Struct, forbid_unknown_fields=True):
    customer_id: Identifier
    destination: DestinationIn
    id: Identifier | None = None
    technician_id: Identifier | None = None
    expected_duration_s: float | None = None
    geofence_radius_m: float | None = None
    skills: list[Identifier] = []
    # GeoJSON Polygon/MultiPolygon (or a Feature holding one) replacing the default circle.
    fence: dict[str, Any] | None = None


class AssignIn(msgspec.Struct, forbid_unknown_fields=True):
    technician_id: Identifier


class TransitionIn(msgspec.Struct, forbid_unknown_fields=True):
    cause: Annotated[str, msgspec.Meta(max_length=500)] | None = None


def _in_range(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise ApiError(422, ErrorCode.OUT_OF_RANGE, f"{name} {value} is outside {low:g}..{high:g}")


@handles_errors
async def create_booking(request: Request) -> Response:
    principal = authenticate(request, {Role.PLATFORM})
    body: BookingCreateIn = await read_body(request, BookingCreateIn)
    check_coordinates(body.destination.lat, body.destination.lon)
    _in_range("expected_duration_s", body.expected_duration_s, 60, 7 * 24 * 3600)
    _in_range("geofence_radius_m", body.geofence_radius_m, 10, 5000)
    if body.fence is not None:
        fence_from_geojson(body.fence, near=(body.destination.lat, body.destination.lon))
    spec = BookingSpec(
        id=body.id,
        fence=body.fence,
        customer_id=body.customer_id,
        destination=Destination(lat=body.destination.lat, lon=body.destination.lon),
        technician_id=body.technician_id,
        skills=tuple(body.skills),
    )
    if body.expected_duration_s is not None:
        spec.expected_duration_s = body.expected_duration_s
    if body.geofence_radius_m is not None:
        spec.geofence_radius_m = body.geofence_radius_m
    booking = await hub_of(request).bookings.create_booking(spec, principal.actor)
    return JSONResponse(public_booking(booking), status_code=201)


@handles_errors
async def read_booking(request: Request) -> Response:
    principal = authenticate(
        request, {Role.PLATFORM, Role.OPERATOR, Role.CUSTOMER, Role.TECHNICIAN}
    )
    booking_id = request.path_params["booking_id"]
    hub = hub_of(request)
    booking = await hub.bookings.get_booking(booking_id)
    visible = booking is not None and (
        principal.role in BOOKING_ADMINS
        or (principal.role is Role.CUSTOMER and principal.booking == booking_id)
        or (principal.role is Role.TECHNICIAN and booking.technician_id == principal.sub)
    )
    if booking is None or not visible:
        # The same answer for "absent" and "not yours": ids are not an oracle.
        raise NotFound(f"booking {booking_id} does not exist")
    body = public_booking(booking)
    if principal.role in BOOKING_ADMINS:
        body["events"] = msgspec.to_builtins(await hub.bookings.booking_events(booking_id))
    return JSONResponse(body)


def transition_endpoint(event: BookingEvent) -> Endpoint:
    """The endpoint applying ``event`` (assign, en_route, arrive, start, complete, cancel)."""

    @handles_errors
    async def endpoint(request: Request) -> Response:
        principal = authenticate(request, BOOKING_ADMINS)
        booking_id = request.path_params["booking_id"]
        technician_id = None
        cause = None
        if event is BookingEvent.ASSIGN:
            technician_id = (await read_body(request, AssignIn)).technician_id
        else:
            cause = (await read_body(request, TransitionIn)).cause
        booking = await hub_of(request).bookings.transition(
            booking_id, event, principal.actor, cause=cause, technician_id=technician_id
        )
        return JSONResponse(public_booking(booking))

    return endpoint


@handles_errors
async def dispatch_booking(request: Request) -> Response:
    principal = authenticate(request, BOOKING_ADMINS)
    dry_run = request.query_params.get("dry_run", "0").lower() in ("1", "true", "yes")
    ranking, booking = await hub_of(request).dispatcher.dispatch(
        request.path_params["booking_id"], principal.actor, dry_run=dry_run
    )
    return JSONResponse(
        {
            "dry_run": dry_run,
            "booking": public_booking(booking),
            "ranking": [_ranked(r) for r in ranking],
        }
    )


def _ranked(entry: Ranked) -> dict[str, Any]:
    return {
        "technician_id": entry.technician_id,
        "eta_s": round(entry.eta_s, 1),
        "distance_m": round(entry.distance_m, 1),
        "position_age_s": round(entry.position_age_s, 1),
    }
