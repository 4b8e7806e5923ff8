"""/v1/stats: the operations figures for a period, from the stored bookings and incidents
(``realtime/stats.py``), for the whole deployment or one city, with a breakdown by city."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alerts.incident import Incident
from realtime.booking import Booking
from realtime.http.common import (
    BOOKING_ADMINS,
    ApiError,
    authenticate,
    checked_identifier,
    handles_errors,
    hub_of,
)
from realtime.http.technicians import time_param
from realtime.hub import Hub
from realtime.protocol import ErrorCode
from realtime.stats import compute

DEFAULT_PERIOD_S = 24 * 3600.0
# One request covers at most this long, and reads at most this many of each: statistics
# are a scan of the stored records (docs/protocol.md).
MAX_PERIOD_S = 92 * 86400.0
MAX_RECORDS = 100_000


@handles_errors
async def get_stats(request: Request) -> Response:
    principal = authenticate(request, BOOKING_ADMINS)
    hub = hub_of(request)
    now = hub.clock()
    t_to = time_param(request, "to", now)
    assert t_to is not None
    t_from = time_param(request, "from", t_to - DEFAULT_PERIOD_S)
    assert t_from is not None
    if not t_from < t_to or t_to - t_from > MAX_PERIOD_S:
        raise ApiError(422, ErrorCode.OUT_OF_RANGE, "from must be before to, at most 92 days apart")
    raw_city = request.query_params.get("city")
    city_id = None
    if raw_city is not None:
        city_id = hub.cities.of(hub.cities.require(checked_identifier(raw_city))).id
    cities = hub.cities

    def visible(city: str | None) -> bool:
        # An operator of a group sees the figures of that group's cities (and of those
        # with no group), as on the console.
        return principal.group is None or principal.watches(cities.of(city).operator_group)

    bookings = [
        b
        for b in await hub.store.bookings_created_between(t_from, t_to, MAX_RECORDS)
        if visible(b.city)
    ]
    incidents = [
        i
        for i in await hub.store.incidents_created_between(t_from, t_to, MAX_RECORDS)
        if visible(i.city)
    ]
    by_city: dict[str, Any] = {}
    for city in sorted(
        {cities.of(b.city).id for b in bookings} | {cities.of(i.city).id for i in incidents}
    ):
        by_city[city] = msgspec.to_builtins(
            compute(
                [b for b in bookings if cities.of(b.city).id == city],
                [i for i in incidents if cities.of(i.city).id == city],
                t_from=t_from,
                t_to=t_to,
                city=city,
            )
        )
    if city_id is not None:
        bookings = [b for b in bookings if cities.of(b.city).id == city_id]
        incidents = [i for i in incidents if cities.of(i.city).id == city_id]
    body = msgspec.to_builtins(compute(bookings, incidents, t_from=t_from, t_to=t_to, city=city_id))
    if city_id is None:
        body["by_city"] = by_city
    by_zone = _by_zone(hub, bookings, incidents, t_from, t_to, city_id)
    if by_zone:
        body["by_zone"] = by_zone
    return JSONResponse(body)


def _by_zone(
    hub: Hub,
    bookings: list[Booking],
    incidents: list[Incident],
    t_from: float,
    t_to: float,
    city_id: str | None,
) -> dict[str, Any]:
    """The figures per zone document (``PUT /v1/zones/{id}``): bookings by their address,
    incidents by their booking's address (else where they were raised). A booking redacted
    by retention has its address rounded to ~1 km: near a zone's edge it may count in the
    neighbouring one."""
    zoning = hub.zoning
    if not zoning.ids():
        return {}

    def zones_of(lat: float, lon: float) -> set[str]:
        return {z for z in zoning.ids_at(lat, lon) if "/" not in z}

    booking_zones = {b.id: zones_of(b.destination.lat, b.destination.lon) for b in bookings}
    incident_zones: dict[str, set[str]] = {}
    for incident in incidents:
        place = incident.address or incident.location
        incident_zones[incident.id] = set() if place is None else zones_of(place.lat, place.lon)
    out = {}
    for zone_id in zoning.ids():
        mine = [b for b in bookings if zone_id in booking_zones[b.id]]
        raised = [i for i in incidents if zone_id in incident_zones[i.id]]
        if mine or raised:
            figures = compute(mine, raised, t_from=t_from, t_to=t_to, city=city_id)
            out[zone_id] = msgspec.to_builtins(figures)
    return out
