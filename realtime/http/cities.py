"""/v1/cities: the platform's cities (time zone, service area, tariff, dispatch weights,
escalation timings, retention; ``realtime/city.py``). The platform writes them, operators
read them. ``default`` always exists: the rules of bookings and technicians with no city."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from realtime.auth import Role
from realtime.bookings_desk import NotFound
from realtime.city import City
from realtime.http.common import (
    BOOKING_ADMINS,
    ApiError,
    authenticate,
    checked_identifier,
    handles_errors,
    hub_of,
    read_body,
)
from realtime.protocol import ErrorCode


def city_json(city: City) -> dict[str, Any]:
    return msgspec.to_builtins(city)


@handles_errors
async def put_city(request: Request) -> Response:
    authenticate(request, {Role.PLATFORM})
    city_id = checked_identifier(request.path_params["city_id"])
    body = await read_body(request, dict[str, Any])
    if body.get("id", city_id) != city_id:
        raise ApiError(422, ErrorCode.INVALID_FIELD, f"id {body['id']!r} is not {city_id!r}")
    try:
        city = msgspec.convert({**body, "id": city_id}, City)
    except msgspec.ValidationError as exc:
        raise ApiError(422, ErrorCode.INVALID_FIELD, str(exc)) from None
    hub = hub_of(request)
    known = set(hub.zoning.ids()) | {zone.id for zone in hub.zoning.index}
    missing = [zone_id for zone_id in city.zone_ids if zone_id not in known]
    if missing:
        raise ApiError(
            422,
            ErrorCode.INVALID_FIELD,
            f"zone_ids: {', '.join(missing)} not defined (PUT /v1/zones/{{id}} first)",
        )
    await hub.cities.put(city)
    return JSONResponse(city_json(city))


@handles_errors
async def get_city(request: Request) -> Response:
    authenticate(request, BOOKING_ADMINS)
    city_id = request.path_params["city_id"]
    city = hub_of(request).cities.configured(city_id)
    if city is None:
        raise NotFound(f"city {city_id} is not configured")
    return JSONResponse(city_json(city))


@handles_errors
async def list_cities(request: Request) -> Response:
    authenticate(request, BOOKING_ADMINS)
    return JSONResponse({"cities": [city_json(c) for c in hub_of(request).cities.all()]})
