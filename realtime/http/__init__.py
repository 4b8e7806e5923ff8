"""The HTTP API, one module per resource, and the one route table the app mounts.

``common`` holds what every endpoint shares (authentication, body decoding, validators,
error answers); ``tokens``, ``bookings``, ``technicians``, ``zones``, ``safety`` (SOS and
incidents), ``alerts``, ``people`` (contacts, erasure, audit) and ``health`` hold the
endpoints; ``openapi`` and ``asyncapi`` describe this table and the sockets for machines
(``/openapi.json``, ``/asyncapi.json``). The table below is the whole REST surface in one
place (docs/protocol.md); tests/realtime/test_authorization_matrix.py has a row for every
route in it.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Route
from starlette.types import ExceptionHandler

from alerts.incident import IncidentAction
from realtime.booking import BookingEvent
from realtime.http import (
    alerts,
    asyncapi,
    bookings,
    cities,
    health,
    openapi,
    people,
    quotes,
    safety,
    stats,
    technicians,
    tokens,
    zones,
)
from realtime.http.common import http_exception_handler, server_error_handler

# For what no endpoint's ``handles_errors`` sees (unknown routes, wrong methods, an exception
# outside an endpoint): JSON ``{code, message}`` answers, never an HTML page or a traceback.
exception_handlers: dict[type[Exception] | int, ExceptionHandler] = {
    HTTPException: http_exception_handler,
    Exception: server_error_handler,
}


def _transition(path: str, event: BookingEvent) -> Route:
    return Route(path, bookings.transition_endpoint(event), methods=["POST"])


def _incident(path: str, action: IncidentAction) -> Route:
    return Route(path, safety.incident_action(action), methods=["POST"])


routes: list[BaseRoute] = [
    Route("/v1/sos", safety.post_sos, methods=["POST"]),
    Route("/v1/sos/{sos_id}", safety.get_sos, methods=["GET"]),
    Route("/v1/sos/{sos_id}/cancel", safety.cancel_sos, methods=["POST"]),
    Route("/v1/incidents", safety.list_incidents, methods=["GET"]),
    Route("/v1/incidents/{incident_id}", safety.get_incident, methods=["GET"]),
    _incident("/v1/incidents/{incident_id}/ack", IncidentAction.ACK),
    _incident("/v1/incidents/{incident_id}/resolve", IncidentAction.RESOLVE),
    Route("/v1/alerts", alerts.list_alerts, methods=["GET"]),
    Route("/v1/alerts/{alert_id}", alerts.get_alert, methods=["GET"]),
    Route("/v1/alerts/{alert_id}/ack", alerts.ack_alert, methods=["POST"]),
    Route("/v1/people/{role}/{person_id}/contacts", people.put_contacts, methods=["PUT"]),
    Route("/v1/people/{role}/{person_id}/contacts", people.get_contacts, methods=["GET"]),
    Route("/v1/tokens", tokens.create_token, methods=["POST"]),
    Route("/v1/tokens/refresh", tokens.refresh_token, methods=["POST"]),
    Route("/v1/tokens/revoke", tokens.revoke_token, methods=["POST"]),
    Route("/v1/bookings", bookings.create_booking, methods=["POST"]),
    Route("/v1/bookings/{booking_id}", bookings.read_booking, methods=["GET"]),
    _transition("/v1/bookings/{booking_id}/assign", BookingEvent.ASSIGN),
    _transition("/v1/bookings/{booking_id}/en_route", BookingEvent.EN_ROUTE),
    _transition("/v1/bookings/{booking_id}/arrive", BookingEvent.CHECK_IN),
    _transition("/v1/bookings/{booking_id}/start", BookingEvent.START_SERVICE),
    _transition("/v1/bookings/{booking_id}/complete", BookingEvent.CHECK_OUT),
    _transition("/v1/bookings/{booking_id}/cancel", BookingEvent.CANCEL),
    Route("/v1/bookings/{booking_id}/dispatch", bookings.dispatch_booking, methods=["POST"]),
    Route("/v1/bookings/{booking_id}/quote", bookings.accept_quote, methods=["POST"]),
    Route("/v1/dispatch/batch", bookings.dispatch_batch, methods=["POST"]),
    Route("/v1/quotes/travel", quotes.quote_travel, methods=["POST"]),
    Route("/v1/quotes/{quote_id}", quotes.get_quote, methods=["GET"]),
    Route("/v1/technicians/{technician_id}", technicians.put_technician, methods=["PUT"]),
    Route("/v1/technicians/{technician_id}", technicians.get_technician, methods=["GET"]),
    Route("/v1/technicians/{technician_id}/track", technicians.technician_track, methods=["GET"]),
    Route("/v1/cities", cities.list_cities, methods=["GET"]),
    Route("/v1/cities/{city_id}", cities.put_city, methods=["PUT"]),
    Route("/v1/cities/{city_id}", cities.get_city, methods=["GET"]),
    Route("/v1/stats", stats.get_stats, methods=["GET"]),
    Route("/v1/zones", zones.list_zones, methods=["GET"]),
    Route("/v1/zones/{zone_id}", zones.put_zone, methods=["PUT"]),
    Route("/v1/zones/{zone_id}", zones.get_zone, methods=["GET"]),
    Route("/v1/zones/{zone_id}", zones.delete_zone, methods=["DELETE"]),
    Route("/healthz", health.healthz),
    Route("/readyz", health.readyz),
    Route("/metrics", health.metrics),
    # The API described by machines, built from this table and the protocol structs.
    Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
    Route("/asyncapi.json", asyncapi.asyncapi_json, methods=["GET"]),
    Route("/v1/people/{role}/{person_id}/data", people.erase_data, methods=["DELETE"]),
    Route("/v1/audit", people.list_audit, methods=["GET"]),
]
