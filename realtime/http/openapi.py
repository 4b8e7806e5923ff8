"""``GET /openapi.json``: the REST API as an OpenAPI 3.1 document, built from the app's own
route table and the msgspec structs, never written by hand.

``OPERATIONS`` says, per route and method, what the route table cannot: who may call it
(the roles its ``authenticate(request, {...})`` names), the body struct it decodes, the
struct of its answer and the statuses and error codes it can refuse with. ``openapi_document``
walks the app's routes and looks each one up there, so a route added without an entry is a
``KeyError`` (and a failing test), not a hole in the document. The sockets are in
``/asyncapi.json`` (``asyncapi.py``); the pages are listed as ``text/html``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from alerts.incident import Incident
from alerts.safety_alert import SafetyAlert
from realtime.auth import Role
from realtime.booking import Booking
from realtime.city import City
from realtime.http import api_answers as out
from realtime.http.alerts import AlertAckIn
from realtime.http.bookings import (
    AssignIn,
    BatchIn,
    BookingCreateIn,
    CancelIn,
    QuoteAcceptIn,
    TransitionIn,
)
from realtime.http.common import MAX_BODY_BYTES, Identifier
from realtime.http.people import ContactsIn
from realtime.http.quotes import QuoteIn
from realtime.http.safety import IncidentActIn, SosIn
from realtime.http.technicians import ProfileIn
from realtime.http.tokens import RevokeIn, TokenIn
from realtime.protocol import PROTOCOL_VERSION, ErrorCode
from realtime.quotes import TravelQuote

OPENAPI_VERSION = "3.1.0"
SCHEMA_REF = "#/components/schemas/{name}"

# The codes of refusals that are not ``ErrorCode`` members: a fence or zone that is not good
# GeoJSON (``geofence.fences.GeoJSONError``) and contacts that do not validate
# (``alerts.contacts.ContactError``). tests/realtime/test_openapi.py reads those modules'
# sources and fails when a code is raised there that is missing here.
GEOJSON_CODES = (
    "coordinates_out_of_range",
    "coordinates_swapped",
    "crosses_antimeridian",
    "duplicate_zone_id",
    "far_from_destination",
    "invalid_coordinates",
    "invalid_geojson",
    "invalid_geometry",
    "invalid_properties",
    "missing_coordinates",
    "missing_geometry",
    "ring_too_short",
    "self_intersection",
    "too_large",
    "too_small",
    "unclosed_ring",
    "wrong_geometry_type",
)
CONTACT_CODES = ("contact_unreachable", "invalid_contacts")
ALL_CODES = tuple(sorted({*(c.value for c in ErrorCode), *GEOJSON_CODES, *CONTACT_CODES}))

Credential = Literal["token_or_key", "key", "none"]
Media = Literal["application/json", "application/geo+json", "text/plain", "text/html"]


class Query(msgspec.Struct, frozen=True):
    """A query parameter; its value is always read as a string and parsed by the endpoint."""

    name: str
    description: str
    required: bool = False


class Operation(msgspec.Struct, frozen=True):
    """What one route and method does, beside what the route table knows.

    ``roles`` are those named by the endpoint's ``authenticate`` call (empty for public
    routes and for the two that take the platform API key itself, ``credential="key"``).
    ``answers`` maps each success status to the type of its body (``None``: no body;
    a ``dict``: a JSON schema as is). ``errors`` maps each refusal status to its codes,
    beside those every endpoint of its kind has (``common_errors``).
    """

    summary: str
    roles: frozenset[Role] = frozenset()
    credential: Credential = "token_or_key"
    body: Any = None
    answers: dict[int, Any] = {}
    errors: dict[int, tuple[str, ...]] = {}
    query: tuple[Query, ...] = ()
    media: Media = "application/json"
    # Public routes that do not go through ``handles_errors`` (probes, pages, these
    # documents) answer no store errors.
    store: bool = True


ADMINS = frozenset({Role.PLATFORM, Role.OPERATOR})
PLATFORM = frozenset({Role.PLATFORM})
OPERATOR = frozenset({Role.OPERATOR})
REPORTERS = frozenset({Role.TECHNICIAN, Role.CUSTOMER})
TOKEN_HOLDERS = frozenset({Role.TECHNICIAN, Role.CUSTOMER, Role.OPERATOR})
EVERY_ROLE = frozenset(Role)

NOT_FOUND = {404: (ErrorCode.NOT_FOUND,)}
DRY_RUN = Query("dry_run", "1/true/yes: rank (and match) without assigning; 0/false/no (default)")
GEOJSON_OBJECT: dict[str, Any] = {
    "type": "object",
    "description": "A GeoJSON Polygon or MultiPolygon, or a Feature (Collection) of them",
}
HTML_PAGE: dict[str, Any] = {"type": "string"}
TEXT: dict[str, Any] = {"type": "string"}
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _transition(summary: str, body: type, extra: dict[int, tuple[str, ...]]) -> Operation:
    errors = {404: (ErrorCode.NOT_FOUND,), **extra}
    errors[409] = (ErrorCode.ILLEGAL_TRANSITION, *errors.get(409, ()))
    return Operation(summary, ADMINS, body=body, answers={200: Booking}, errors=errors)


def _incident_action(summary: str) -> Operation:
    return Operation(
        summary,
        OPERATOR,
        body=IncidentActIn,
        answers={200: Incident},
        errors={404: (ErrorCode.NOT_FOUND,), 409: (ErrorCode.ILLEGAL_TRANSITION,)},
    )


def _page(summary: str) -> Operation:
    return Operation(
        summary, credential="none", answers={200: HTML_PAGE}, media="text/html", store=False
    )


# Keyed by (method, path) as in the route table (realtime/http/__init__.py, realtime/pages.py).
OPERATIONS: dict[tuple[str, str], Operation] = {
    # ---- SOS and incidents
    ("POST", "/v1/sos"): Operation(
        "Raise an SOS over HTTP when the socket is down: 201 once stored, 200 for a retry",
        REPORTERS,
        body=SosIn,
        answers={201: out.SosAnswer, 200: out.SosAnswer},
        errors={
            404: (ErrorCode.NOT_FOUND,),
            409: (ErrorCode.BOOKING_CLOSED, ErrorCode.CONFLICT),
            422: (ErrorCode.TIMESTAMP_IN_FUTURE, ErrorCode.TIMESTAMP_TOO_OLD),
            503: (ErrorCode.SOS_NOT_STORED,),
        },
    ),
    ("GET", "/v1/sos/{sos_id}"): Operation(
        "The state of one of the caller's own SOS",
        REPORTERS,
        answers={200: out.SosState},
        errors=NOT_FOUND,
    ),
    ("POST", "/v1/sos/{sos_id}/cancel"): Operation(
        "Take back one of the caller's own SOS (a pocket press)",
        REPORTERS,
        body=IncidentActIn,
        answers={200: out.SosState},
        errors={404: (ErrorCode.NOT_FOUND,), 409: (ErrorCode.ILLEGAL_TRANSITION,)},
    ),
    ("GET", "/v1/incidents"): Operation(
        "The open incidents the operator watches", OPERATOR, answers={200: out.IncidentList}
    ),
    ("GET", "/v1/incidents/{incident_id}"): Operation(
        "One incident with its trail, audit and deliveries",
        OPERATOR,
        answers={200: Incident},
        errors=NOT_FOUND,
    ),
    ("POST", "/v1/incidents/{incident_id}/ack"): _incident_action(
        "Take an incident: escalation stops"
    ),
    ("POST", "/v1/incidents/{incident_id}/resolve"): _incident_action(
        "Resolve an incident with an outcome"
    ),
    # ---- safety alerts
    ("GET", "/v1/alerts"): Operation(
        "The open safety alerts, oldest first", OPERATOR, answers={200: out.AlertList}
    ),
    ("GET", "/v1/alerts/{alert_id}"): Operation(
        "One safety alert with its audit trail",
        OPERATOR,
        answers={200: out.AlertWithAudit},
        errors=NOT_FOUND,
    ),
    ("POST", "/v1/alerts/{alert_id}/ack"): Operation(
        "Acknowledge a safety alert",
        OPERATOR,
        body=AlertAckIn,
        answers={200: SafetyAlert},
        errors={404: (ErrorCode.NOT_FOUND,), 409: (ErrorCode.ILLEGAL_TRANSITION,)},
    ),
    # ---- people
    ("PUT", "/v1/people/{role}/{person_id}/contacts"): Operation(
        "Set a person's emergency contacts",
        PLATFORM,
        body=ContactsIn,
        answers={200: out.Contacts},
        errors={404: (ErrorCode.NOT_FOUND,), 422: CONTACT_CODES},
    ),
    ("GET", "/v1/people/{role}/{person_id}/contacts"): Operation(
        "A person's emergency contacts (every read is audited)",
        ADMINS,
        answers={200: out.Contacts},
        errors=NOT_FOUND,
    ),
    ("DELETE", "/v1/people/{role}/{person_id}/data"): Operation(
        "Erase a person's data: what went, what was kept and why",
        PLATFORM,
        answers={200: out.Erasure},
        errors=NOT_FOUND,
    ),
    ("GET", "/v1/audit"): Operation(
        "Who read or erased a person's data, newest first",
        PLATFORM,
        answers={200: out.AuditAnswer},
        errors={422: (ErrorCode.INVALID_FIELD, ErrorCode.OUT_OF_RANGE)},
        query=(
            Query("subject", "the person's id", required=True),
            Query("limit", "entries at most, 1..1000 (default 1000)"),
        ),
    ),
    # ---- tokens
    ("POST", "/v1/tokens"): Operation(
        "Mint a token for a technician, customer (of one booking) or operator",
        credential="key",
        body=TokenIn,
        answers={201: out.MintedToken},
    ),
    ("POST", "/v1/tokens/refresh"): Operation(
        "A new token for the holder of a valid one (same sub, role, booking)",
        TOKEN_HOLDERS,
        answers={201: out.MintedToken},
        errors={403: (ErrorCode.BOOKING_CLOSED,)},
    ),
    ("POST", "/v1/tokens/revoke"): Operation(
        "Revoke one token (jti) or every token of a subject (sub); their sockets close",
        credential="key",
        body=RevokeIn,
        answers={200: out.Revoked},
    ),
    # ---- bookings
    ("POST", "/v1/bookings"): Operation(
        "Create a booking",
        PLATFORM,
        body=BookingCreateIn,
        answers={201: Booking},
        errors={
            404: (ErrorCode.NOT_FOUND,),
            409: (ErrorCode.CONFLICT, ErrorCode.QUOTE_EXPIRED, ErrorCode.TECHNICIAN_BUSY),
            422: (
                ErrorCode.OUTSIDE_SERVICE_AREA,
                ErrorCode.UNKNOWN_CITY,
                ErrorCode.UNKNOWN_QUOTE,
                *GEOJSON_CODES,
            ),
        },
    ),
    ("GET", "/v1/bookings/{booking_id}"): Operation(
        "Read a booking (its customer and technician too; events for admins only)",
        EVERY_ROLE,
        answers={200: out.BookingRead},
        errors=NOT_FOUND,
    ),
    ("POST", "/v1/bookings/{booking_id}/assign"): _transition(
        "Assign a technician", AssignIn, {409: (ErrorCode.CONFLICT, ErrorCode.TECHNICIAN_BUSY)}
    ),
    ("POST", "/v1/bookings/{booking_id}/en_route"): _transition(
        "The technician sets off", TransitionIn, {409: (ErrorCode.TECHNICIAN_BUSY,)}
    ),
    ("POST", "/v1/bookings/{booking_id}/arrive"): _transition("Check in by hand", TransitionIn, {}),
    ("POST", "/v1/bookings/{booking_id}/start"): _transition("Start the service", TransitionIn, {}),
    ("POST", "/v1/bookings/{booking_id}/complete"): _transition(
        "Check out by hand", TransitionIn, {}
    ),
    ("POST", "/v1/bookings/{booking_id}/cancel"): _transition(
        "Cancel the booking (and say who gave it up)", CancelIn, {}
    ),
    ("POST", "/v1/bookings/{booking_id}/dispatch"): Operation(
        "Rank the free technicians and assign the best (or only rank: dry_run)",
        ADMINS,
        answers={200: out.DispatchAnswer},
        errors={
            404: (ErrorCode.NOT_FOUND,),
            409: (
                ErrorCode.CONFLICT,
                ErrorCode.ILLEGAL_TRANSITION,
                ErrorCode.NO_TECHNICIAN_AVAILABLE,
                ErrorCode.TECHNICIAN_BUSY,
            ),
            422: (ErrorCode.INVALID_FIELD, ErrorCode.UNKNOWN_CITY),
        },
        query=(DRY_RUN,),
    ),
    ("POST", "/v1/bookings/{booking_id}/quote"): Operation(
        "The customer accepted a travel-fee quote made after the booking",
        ADMINS,
        body=QuoteAcceptIn,
        answers={200: Booking},
        errors={
            404: (ErrorCode.NOT_FOUND,),
            409: (ErrorCode.CONFLICT, ErrorCode.QUOTE_EXPIRED),
            422: (ErrorCode.UNKNOWN_QUOTE,),
        },
    ),
    ("POST", "/v1/dispatch/batch"): Operation(
        "Match a city's waiting bookings (or those named) to free technicians at once",
        ADMINS,
        body=BatchIn,
        answers={200: out.BatchAnswer},
        errors={
            404: (ErrorCode.NOT_FOUND,),
            409: (ErrorCode.CONFLICT,),
            422: (ErrorCode.UNKNOWN_CITY,),
        },
        query=(DRY_RUN,),
    ),
    # ---- quotes and cities
    ("POST", "/v1/quotes/travel"): Operation(
        "Price the trip to the door (holds 5 minutes)",
        ADMINS,
        body=QuoteIn,
        answers={201: TravelQuote},
        errors={
            404: (ErrorCode.NOT_FOUND,),
            409: (ErrorCode.CONFLICT,),
            422: (ErrorCode.UNKNOWN_CITY,),
        },
    ),
    ("GET", "/v1/quotes/{quote_id}"): Operation(
        "One travel-fee quote", ADMINS, answers={200: TravelQuote}, errors=NOT_FOUND
    ),
    ("GET", "/v1/cities"): Operation("Every configured city", ADMINS, answers={200: out.CityList}),
    ("GET", "/v1/stats"): Operation(
        "The operations figures of a period (and city), from the stored records",
        ADMINS,
        answers={200: out.StatsAnswer},
        errors={422: (ErrorCode.INVALID_FIELD, ErrorCode.OUT_OF_RANGE, ErrorCode.UNKNOWN_CITY)},
        query=(
            Query("city", "a configured city id (default: all, with by_city)"),
            Query("from", "Unix seconds (default: 24 h before to)"),
            Query("to", "Unix seconds (default: now); at most 92 days after from"),
        ),
    ),
    ("PUT", "/v1/cities/{city_id}"): Operation(
        "Create or replace a city (its zones must exist)",
        PLATFORM,
        body="CityIn",
        answers={200: City},
    ),
    ("GET", "/v1/cities/{city_id}"): Operation(
        "One city", ADMINS, answers={200: City}, errors=NOT_FOUND
    ),
    # ---- technicians
    ("PUT", "/v1/technicians/{technician_id}"): Operation(
        "Create or replace a technician's profile",
        PLATFORM,
        body=ProfileIn,
        answers={200: out.TechnicianOut},
        errors={422: (ErrorCode.UNKNOWN_CITY,)},
    ),
    ("GET", "/v1/technicians/{technician_id}"): Operation(
        "A technician's profile, live state and visit record",
        ADMINS,
        answers={200: out.TechnicianView},
        errors=NOT_FOUND,
    ),
    ("GET", "/v1/technicians/{technician_id}/track"): Operation(
        "A technician's location history as a GeoJSON Feature (every read is audited)",
        ADMINS,
        answers={200: out.TrackFeature},
        errors={422: (ErrorCode.INVALID_FIELD, ErrorCode.OUT_OF_RANGE)},
        query=(
            Query("from", "Unix seconds (default: 24 h before to)"),
            Query("to", "Unix seconds (default: now)"),
        ),
        media="application/geo+json",
    ),
    # ---- zones
    ("GET", "/v1/zones"): Operation(
        "The ids of every zone document", ADMINS, answers={200: out.ZoneIds}
    ),
    ("PUT", "/v1/zones/{zone_id}"): Operation(
        "Create or replace a zone document (GeoJSON)",
        PLATFORM,
        body=GEOJSON_OBJECT,
        answers={200: out.ZonePut},
        errors={422: GEOJSON_CODES},
    ),
    ("GET", "/v1/zones/{zone_id}"): Operation(
        "A zone document as it was put",
        ADMINS,
        answers={200: GEOJSON_OBJECT},
        errors=NOT_FOUND,
        media="application/geo+json",
    ),
    ("DELETE", "/v1/zones/{zone_id}"): Operation(
        "Delete a zone document", PLATFORM, answers={204: None}, errors=NOT_FOUND
    ),
    # ---- probes and documents (public)
    ("GET", "/healthz"): Operation(
        "The process answers", credential="none", answers={200: out.Health}, store=False
    ),
    ("GET", "/readyz"): Operation(
        "Hub, store, bus and background tasks are up (503 says what is down)",
        credential="none",
        answers={200: out.Readiness, 503: out.Readiness},
        store=False,
    ),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics",
        credential="none",
        answers={200: TEXT},
        media="text/plain",
        store=False,
    ),
    ("GET", "/openapi.json"): Operation(
        "This document", credential="none", answers={200: ANY_OBJECT}, store=False
    ),
    ("GET", "/asyncapi.json"): Operation(
        "The sockets as an AsyncAPI 3.0 document",
        credential="none",
        answers={200: ANY_OBJECT},
        store=False,
    ),
    # ---- pages (realtime/pages.py)
    ("GET", "/"): _page("The index page: what this hub is, links to the pages and documents"),
    ("GET", "/track"): _page("The customer's tracking page"),
    ("GET", "/console"): _page("The operators' console"),
    ("GET", "/tech"): _page("The technician's web app"),
    ("GET", "/dashboard"): _page("The operations dashboard (an operator's token)"),
}


def common_errors(operation: Operation) -> dict[int, tuple[str, ...]]:
    """The refusals every endpoint of this kind has: credentials, body decoding, the store."""
    errors: dict[int, tuple[str, ...]] = {}
    if operation.credential != "none":
        errors[401] = (ErrorCode.UNAUTHORIZED,)
    if operation.credential == "token_or_key" and operation.roles != EVERY_ROLE:
        errors[403] = (ErrorCode.FORBIDDEN,)
    if operation.body is not None:
        # 400 also for a bad Content-Length; 422 for a field of the wrong type or range.
        errors[400] = (ErrorCode.INVALID_JSON, ErrorCode.INVALID_FIELD)
        errors[413] = (ErrorCode.FRAME_TOO_LARGE,)
        errors[422] = (ErrorCode.INVALID_FIELD, ErrorCode.OUT_OF_RANGE)
    if operation.store:
        errors[503] = (ErrorCode.STORE_UNAVAILABLE, ErrorCode.STORE_FULL)
    return errors


def all_errors(operation: Operation, path: str) -> dict[int, tuple[str, ...]]:
    """Common and own refusals merged; a path id that breaks the id rule is 422."""
    merged: dict[int, set[str]] = {}
    extra: dict[int, tuple[str, ...]] = {}
    if "{" in path and operation.store:
        extra[422] = (ErrorCode.INVALID_FIELD,)
    for source in (common_errors(operation), extra, operation.errors):
        for status, codes in source.items():
            merged.setdefault(status, set()).update(str(c) for c in codes)
    return {status: tuple(sorted(codes)) for status, codes in sorted(merged.items())}


def documented_routes(routes: Iterable[BaseRoute]) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route (sockets and static files are not ``Route``s)."""
    found = []
    for route in routes:
        if isinstance(route, Route):
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                found.append((method, route.path))
    return found


def _city_in(components: dict[str, Any]) -> dict[str, Any]:
    """``PUT /v1/cities/{id}``'s body: a City whose ``id`` may be left out (the path's)."""
    schema = dict(components["City"])
    schema["required"] = [name for name in schema.get("required", []) if name != "id"]
    return schema


def openapi_document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these routes; KeyError names a route with no entry."""
    keys = documented_routes(routes)
    missing = [f"{m} {p}" for m, p in keys if (m, p) not in OPERATIONS]
    if missing:
        raise KeyError(f"routes with no entry in realtime.http.openapi.OPERATIONS: {missing}")
    struct_types = _struct_types(OPERATIONS[key] for key in keys)
    _, components = msgspec.json.schema_components(struct_types, ref_template=SCHEMA_REF)
    components["Error"]["properties"]["code"] = {"enum": list(ALL_CODES)}
    components["CityIn"] = _city_in(components)
    paths: dict[str, Any] = {}
    for method, path in keys:
        item = paths.setdefault(path, {})
        item[method.lower()] = _operation(method, path, OPERATIONS[(method, path)])
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Doorstep hub",
            "version": f"{PROTOCOL_VERSION}",
            "description": (
                "Real-time tracking and safety for door-to-door services. The prose is "
                "docs/protocol.md; the sockets are in /asyncapi.json."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "A JWT minted by POST /v1/tokens (technician, customer, operator), "
                        "or the platform API key itself"
                    ),
                }
            },
        },
    }


def _struct_types(operations: Iterable[Operation]) -> list[Any]:
    types: list[Any] = [out.Error, City]
    for operation in operations:
        for value in (operation.body, *operation.answers.values()):
            if isinstance(value, type):
                types.append(value)
    return list(dict.fromkeys(types))


def _schema(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return {"$ref": SCHEMA_REF.format(name=value)}
    return {"$ref": SCHEMA_REF.format(name=value.__name__)}


def _path_parameter(name: str) -> dict[str, Any]:
    if name == "role":
        schema: dict[str, Any] = {"type": "string", "enum": ["technician", "customer"]}
    else:
        schema = msgspec.json.schema(Identifier)
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _operation_id(method: str, path: str) -> str:
    return f"{method.lower()}{path}".replace("/", "_").replace("{", "").replace("}", "")


def _operation(method: str, path: str, operation: Operation) -> dict[str, Any]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    parameters = [_path_parameter(name) for name in names]
    parameters += [
        {
            "name": q.name,
            "in": "query",
            "required": q.required,
            "description": q.description,
            "schema": {"type": "string"},
        }
        for q in operation.query
    ]
    document: dict[str, Any] = {
        "operationId": f"{method.lower()}{path}".replace("/", "_")
        .replace("{", "")
        .replace("}", ""),
        "summary": operation.summary,
        "responses": _responses(operation, path),
    }
    if operation.credential == "none":
        document["security"] = []
    else:
        document["security"] = [{"bearer": []}]
        holders = (
            ["platform API key"]
            if operation.credential == "key"
            else sorted(role.value for role in operation.roles)
        )
        document["x-roles"] = holders
        document["description"] = "Who may call it: " + ", ".join(holders) + "."
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        document["requestBody"] = {
            "required": False,
            "description": f"JSON, at most {MAX_BODY_BYTES} bytes; an empty body is {{}}",
            "content": {"application/json": {"schema": _schema(operation.body)}},
        }
    return document


def _responses(operation: Operation, path: str) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, body in sorted(operation.answers.items()):
        answer: dict[str, Any] = {"description": "OK" if status < 300 else "Not ready"}
        if body is not None:
            answer["content"] = {operation.media: {"schema": _schema(body)}}
        responses[str(status)] = answer
    for status, codes in all_errors(operation, path).items():
        if str(status) in responses:
            continue  # /readyz: its 503 is its own body
        schema = {
            "allOf": [
                {"$ref": SCHEMA_REF.format(name="Error")},
                {"properties": {"code": {"enum": list(codes)}}},
            ]
        }
        responses[str(status)] = {
            "description": "Refused: " + ", ".join(codes),
            "content": {"application/json": {"schema": schema}},
        }
    return responses


def cached_document(
    request: Request, name: str, build: Callable[[Sequence[BaseRoute]], dict[str, Any]]
) -> Response:
    """A document of this app's routes, built once per app (the routes do not change)."""
    state = request.app.state
    document = getattr(state, name, None)
    if document is None:
        document = build(request.app.routes)
        setattr(state, name, document)
    return JSONResponse(document)


async def openapi_json(request: Request) -> Response:
    return cached_document(request, "openapi_document", openapi_document)
