"""/v1/quotes/travel: the travel fee for a trip to the door (``realtime/quotes.py``).

Asked by the platform (or an operator) for a booking, ``{"booking_id", "technician_id"?}``
(from that technician's last position, or the booking's assigned one; priced for the start
of the booking's promised window when that is later than now), or for a trip not
booked yet, ``{"city"?, "origin"?, "destination", "technician_id"?}`` (``origin`` may be
left out when ``technician_id`` is given: their last position). The answer holds for
5 minutes (``expires_at``); a booking carries the one its customer accepted.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from realtime.booking import Destination
from realtime.bookings_desk import NotFound
from realtime.dispatch import MAX_POSITION_AGE_S
from realtime.http.bookings import DestinationIn
from realtime.http.common import (
    BOOKING_ADMINS,
    ApiError,
    Identifier,
    authenticate,
    handles_errors,
    hub_of,
    read_body,
)
from realtime.hub import Hub
from realtime.ingest import check_coordinates
from realtime.protocol import ErrorCode, ProtocolError
from realtime.quotes import TravelQuote


class QuoteIn(msgspec.Struct, forbid_unknown_fields=True):
    booking_id: Identifier | None = None
    technician_id: Identifier | None = None
    city: Identifier | None = None
    origin: DestinationIn | None = None
    destination: DestinationIn | None = None


def quote_json(quote: TravelQuote) -> dict[str, Any]:
    return msgspec.to_builtins(quote)


def _point(point: DestinationIn, name: str) -> Destination:
    try:
        check_coordinates(point.lat, point.lon)
    except ProtocolError as exc:
        raise ApiError(422, exc.code, f"{name}: {exc.message}") from None
    return Destination(lat=point.lat, lon=point.lon)


async def _technician_at(hub: Hub, technician_id: str) -> Destination:
    await hub.fleet.look_around([technician_id])
    last = hub.fleet.last_fix(technician_id)
    if last is None:
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            f"technician {technician_id} has no known position: give an origin",
        )
    # Dispatch's rule for "where the technician is now": a trip priced from where they
    # were hours ago is not the trip they will drive.
    age_s = hub.clock() - last.t
    if age_s > MAX_POSITION_AGE_S:
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            f"technician {technician_id}'s last position is {age_s:.0f} s old (over "
            f"{MAX_POSITION_AGE_S:.0f} s): give an origin",
        )
    return Destination(lat=last.lat, lon=last.lon)


@handles_errors
async def quote_travel(request: Request) -> Response:
    authenticate(request, BOOKING_ADMINS)
    body: QuoteIn = await read_body(request, QuoteIn)
    hub = hub_of(request)
    technician_id = body.technician_id
    starts_t = None
    if body.booking_id is not None:
        if body.destination is not None or body.city is not None:
            raise ApiError(
                422,
                ErrorCode.INVALID_FIELD,
                "a quote for a booking takes its destination and city from the booking",
            )
        booking = await hub.bookings.get_booking(body.booking_id)
        if booking is None:
            raise NotFound(f"booking {body.booking_id} does not exist")
        technician_id = technician_id or booking.technician_id
        destination, city_id = booking.destination, booking.city
        # Priced for when the visit is promised, not for when the quote is asked.
        starts_t = booking.window_start_t
    else:
        if body.destination is None:
            raise ApiError(
                422, ErrorCode.INVALID_FIELD, "give a booking_id, or a destination (and origin)"
            )
        destination, city_id = _point(body.destination, "destination"), body.city
    if body.origin is not None:
        origin = _point(body.origin, "origin")
    elif technician_id is not None:
        origin = await _technician_at(hub, technician_id)
    else:
        raise ApiError(
            422, ErrorCode.INVALID_FIELD, "give an origin, or a technician_id to start from"
        )
    quote = await hub.quotes.quote(
        city_id=city_id,
        origin=origin,
        destination=destination,
        technician_id=technician_id,
        booking_id=body.booking_id,
        starts_t=starts_t,
    )
    return JSONResponse(quote_json(quote), status_code=201)


@handles_errors
async def get_quote(request: Request) -> Response:
    authenticate(request, BOOKING_ADMINS)
    quote_id = request.path_params["quote_id"]
    quote = await hub_of(request).quotes.get(quote_id)
    if quote is None:
        raise NotFound(f"quote {quote_id} does not exist")
    return JSONResponse(quote_json(quote))
