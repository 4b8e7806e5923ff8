"""/v1/zones: the platform-wide GeoJSON zones (service areas, restricted areas) every fix is
checked against (``realtime/zoning.py``); the platform writes them, operators read them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from realtime.auth import Role
from realtime.bookings_desk import NotFound
from realtime.http.common import (
    BOOKING_ADMINS,
    authenticate,
    checked_identifier,
    handles_errors,
    hub_of,
    read_body,
)


@handles_errors
async def put_zone(request: Request) -> Response:
    authenticate(request, {Role.PLATFORM})
    zone_id = checked_identifier(request.path_params["zone_id"])
    document = await read_body(request, dict[str, Any])
    zones = await hub_of(request).zoning.put(zone_id, document)
    return JSONResponse(
        {
            "id": zone_id,
            "zones": [{"id": z.id, "kind": z.kind, "name": z.name} for z in zones],
        }
    )


@handles_errors
async def get_zone(request: Request) -> Response:
    authenticate(request, BOOKING_ADMINS)
    zone_id = request.path_params["zone_id"]
    document = hub_of(request).zoning.get(zone_id)
    if document is None:
        raise NotFound(f"zone {zone_id} does not exist")
    return JSONResponse(document, media_type="application/geo+json")


@handles_errors
async def list_zones(request: Request) -> Response:
    authenticate(request, BOOKING_ADMINS)
    return JSONResponse({"zones": hub_of(request).zoning.ids()})


@handles_errors
async def delete_zone(request: Request) -> Response:
    authenticate(request, {Role.PLATFORM})
    zone_id = request.path_params["zone_id"]
    if not await hub_of(request).zoning.delete(zone_id):
        raise NotFound(f"zone {zone_id} does not exist")
    return Response(status_code=204)
