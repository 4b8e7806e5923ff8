"""/v1/bookings: create and read a booking, move it through its lifecycle, dispatch it.

The lifecycle itself is the pure core in ``realtime/booking.py``; these endpoints validate
the request, check who asks, and hand the command to the hub.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from geofence.fences import fence_from_geojson
from realtime.auth import Role
from realtime.booking import BookingEvent, BookingTerms, Destination
from realtime.bookings_desk import BookingSpec, NotFound
from realtime.city import in_service_area
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
from realtime.hub import Hub
from realtime.ingest import check_coordinates
from realtime.protocol import ErrorCode
from realtime.publish import public_booking


class DestinationIn(msgspec.Struct, forbid_unknown_fields=True):
    lat: float
    lon: float


class WindowIn(msgspec.Struct, forbid_unknown_fields=True):
    """The arrival window promised to the customer (Unix seconds)."""

    start_t: float
    end_t: float


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
    city: Identifier | None = None
    window: WindowIn | None = None
    preferred_technician_id: Identifier | None = None
    quote_id: Identifier | None = None


class QuoteAcceptIn(msgspec.Struct, forbid_unknown_fields=True):
    quote_id: Identifier


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    city: Identifier | None = None
    # At most this many at once: one assignment problem, solved in well under a second.
    booking_ids: Annotated[list[Identifier], msgspec.Meta(max_length=500)] | None = None


class AssignIn(msgspec.Struct, forbid_unknown_fields=True):
    technician_id: Identifier


class TransitionIn(msgspec.Struct, forbid_unknown_fields=True):
    cause: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class CancelIn(TransitionIn, forbid_unknown_fields=True):
    # Who gave the booking up: a technician's cancellation counts in their history score.
    by: Literal["customer", "technician", "platform", "operator"] | None = None


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
    hub = hub_of(request)
    destination = Destination(lat=body.destination.lat, lon=body.destination.lon)
    terms = await _terms(hub, body, destination)
    spec = BookingSpec(
        id=body.id,
        fence=body.fence,
        customer_id=body.customer_id,
        destination=destination,
        technician_id=body.technician_id,
        skills=tuple(body.skills),
        terms=terms,
    )
    if body.expected_duration_s is not None:
        spec.expected_duration_s = body.expected_duration_s
    if body.geofence_radius_m is not None:
        spec.geofence_radius_m = body.geofence_radius_m
    booking = await hub.bookings.create_booking(spec, principal.actor)
    return JSONResponse(public_booking(booking), status_code=201)


async def _terms(hub: Hub, body: BookingCreateIn, destination: Destination) -> BookingTerms:
    """The city, window, preference and quote of a new booking, each checked."""
    city = hub.cities.of(await hub.cities.require_fresh(body.city))
    if not in_service_area(city, hub.zoning.ids_at(destination.lat, destination.lon)):
        raise ApiError(
            422,
            ErrorCode.OUTSIDE_SERVICE_AREA,
            f"the destination is outside city {city.id}'s service area ({list(city.zone_ids)})",
        )
    window = body.window
    if window is not None:
        _in_range("window.start_t", window.start_t, 0, 1e11)
        _in_range("window.end_t", window.end_t, window.start_t + 1, window.start_t + 7 * 86400)
    quote = None
    if body.quote_id is not None:
        quote = await hub.quotes.accepted(
            body.quote_id, destination=destination, city_id=body.city, booking_id=body.id
        )
    return BookingTerms(
        city=body.city,
        window_start_t=None if window is None else window.start_t,
        window_end_t=None if window is None else window.end_t,
        preferred_technician_id=body.preferred_technician_id,
        quote_id=None if quote is None else quote.id,
        quoted_distance_m=None if quote is None else quote.distance_m,
    )


@handles_errors
async def accept_quote(request: Request) -> Response:
    """The customer accepted a quote made after the booking (``{"booking_id"}`` form)."""
    authenticate(request, BOOKING_ADMINS)
    body: QuoteAcceptIn = await read_body(request, QuoteAcceptIn)
    hub = hub_of(request)
    booking_id = request.path_params["booking_id"]
    booking = await hub.bookings.get_booking(booking_id)
    if booking is None:
        raise NotFound(f"booking {booking_id} does not exist")
    if booking.final:
        raise ApiError(409, ErrorCode.CONFLICT, f"booking {booking_id} is {booking.status}")
    quote = await hub.quotes.accepted(
        body.quote_id,
        destination=booking.destination,
        city_id=booking.city,
        booking_id=booking.id,
    )
    booking = await hub.bookings.annotate(
        booking_id, quote_id=quote.id, quoted_distance_m=quote.distance_m
    )
    return JSONResponse(public_booking(booking))


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
        cancelled_by = None
        if event is BookingEvent.ASSIGN:
            technician_id = (await read_body(request, AssignIn)).technician_id
        elif event is BookingEvent.CANCEL:
            cancel: CancelIn = await read_body(request, CancelIn)
            cause, cancelled_by = cancel.cause, cancel.by
        else:
            cause = (await read_body(request, TransitionIn)).cause
        booking = await hub_of(request).bookings.transition(
            booking_id,
            event,
            principal.actor,
            cause=cause,
            technician_id=technician_id,
            cancelled_by=cancelled_by,
        )
        return JSONResponse(public_booking(booking))

    return endpoint


@handles_errors
async def dispatch_booking(request: Request) -> Response:
    principal = authenticate(request, BOOKING_ADMINS)
    dry_run = _dry_run(request)
    evaluation, booking = await hub_of(request).dispatcher.dispatch(
        request.path_params["booking_id"], principal.actor, dry_run=dry_run
    )
    return JSONResponse(
        {
            "dry_run": dry_run,
            "booking": public_booking(booking),
            "ranking": [_ranked(r) for r in evaluation.ranked],
            "excluded": [
                {"technician_id": e.technician_id, "reason": e.reason.value}
                for e in evaluation.excluded
            ],
        }
    )


@handles_errors
async def dispatch_batch(request: Request) -> Response:
    """Match a city's waiting bookings (or the ones named) to free technicians at once."""
    principal = authenticate(request, BOOKING_ADMINS)
    body: BatchIn = await read_body(request, BatchIn)
    dry_run = _dry_run(request)
    result = await hub_of(request).dispatcher.dispatch_batch(
        body.city, body.booking_ids, principal.actor, dry_run=dry_run
    )
    matching = result.matching
    taken = set(result.taken_meanwhile)
    assigned = []
    for a in matching.assignments:
        if a.booking in taken:
            continue
        ranked = result.scores[(a.booking, a.technician)]
        assigned.append({"booking_id": a.booking, **_ranked(ranked)})
    unassigned = [{"booking_id": u.booking, "reason": u.reason.value} for u in matching.unassigned]
    unassigned += [{"booking_id": b, "reason": "taken_meanwhile"} for b in result.taken_meanwhile]
    return JSONResponse(
        {
            "dry_run": dry_run,
            "city": result.city,
            "assigned": assigned,
            "unassigned": sorted(unassigned, key=lambda u: u["booking_id"]),
            # Sums of the assigned pairs' scores (the wait bonus that orders a batch left out).
            "total_s": round(sum(a["total_s"] for a in assigned), 1),
            "one_at_a_time_total_s": round(result.greedy_total_s, 1),
            "one_at_a_time_served": result.greedy_served,
        }
    )


_DRY_RUN_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _dry_run(request: Request) -> bool:
    """``?dry_run=`` as a flag. A value that is neither yes nor no is refused: read as "no",
    a caller's ``dry_run=on`` would assign technicians for real."""
    raw = request.query_params.get("dry_run", "0")
    value = _DRY_RUN_VALUES.get(raw.strip().lower())
    if value is None:
        raise ApiError(
            422,
            ErrorCode.INVALID_FIELD,
            f"dry_run must be 1/true/yes or 0/false/no, not {raw[:20]!r}",
        )
    return value


def _ranked(entry: Ranked) -> dict[str, Any]:
    c = entry.components
    return {
        "technician_id": entry.technician_id,
        "eta_s": round(entry.eta_s, 1),
        "distance_m": round(entry.distance_m, 1),
        "position_age_s": round(entry.position_age_s, 1),
        "components": {
            "eta_s": round(c.eta_s, 1),
            "rating_s": round(c.rating_s, 1),
            "history_s": round(c.history_s, 1),
            "fairness_s": round(c.fairness_s, 1),
            "preferred_s": round(c.preferred_s, 1),
        },
        "total_s": round(entry.total_s, 1),
    }
