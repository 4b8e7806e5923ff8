"""HTTP endpoints: tokens, bookings, location history, health and metrics.

Errors are JSON bodies ``{"code": ..., "message": ...}`` with the same stable codes as the
WebSocket ``error`` frames (docs/protocol.md).
"""

from __future__ import annotations

import logging
import math
import re
from typing import Annotated, Any, Literal

import geojson
import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerts.contacts import ContactError, validate_contacts
from alerts.incident import IllegalIncidentTransition, IncidentAction, Outcome
from alerts.safety_alert import IllegalAlertTransition
from geofence.fences import GeoJSONError, fence_from_geojson
from realtime import auth
from realtime import protocol as wire
from realtime.alerting import AlertNotFound
from realtime.auth import AuthError, Principal, Role
from realtime.backends.base import LockUnavailable, store_error_kind
from realtime.booking import BookingEvent, Destination, IllegalTransition
from realtime.bookings_desk import BookingSpec, Conflict, NotFound, TechnicianBusy
from realtime.dispatch import Ranked
from realtime.dispatcher import NoCandidate
from realtime.hub import Hub
from realtime.ingest import check_coordinates
from realtime.privacy import AccessEntry, WindowRefused, track_window
from realtime.profiles import TechnicianProfile
from realtime.protocol import ErrorCode, ProtocolError
from realtime.publish import public_booking
from realtime.safety import BookingClosed, IncidentNotFound, reporter_key

Identifier = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
]
log = logging.getLogger("doorstep.http")

MAX_BODY_BYTES = 64 * 1024
# msgspec's wording for a numeric constraint (``Expected `int` >= 60``): an out-of-range value.
_NUMERIC_BOUND = re.compile(r"Expected `(int|float)` [<>]=? ")


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


class ProfileIn(msgspec.Struct, forbid_unknown_fields=True):
    skills: list[Identifier] = []
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class AssignIn(msgspec.Struct, forbid_unknown_fields=True):
    technician_id: Identifier


class TransitionIn(msgspec.Struct, forbid_unknown_fields=True):
    cause: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    role: Role
    sub: Identifier
    booking: Identifier | None = None
    ttl_s: Annotated[int, msgspec.Meta(ge=60, le=30 * 24 * 3600)] | None = None


class ApiError(Exception):
    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# Retry-After on a 503 from the store: a Redis reconnect or failover takes seconds; a full
# disk takes an operator, so clients come back later.
STORE_RETRY_AFTER_S = 2
STORE_FULL_RETRY_AFTER_S = 30


def error_response(
    status: int, code: ErrorCode | str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"code": str(code), "message": message}, status_code=status, headers=headers
    )


def unexpected_error_response(exc: BaseException) -> JSONResponse:
    """The answer to an exception no handler names: 503 when the store is away or full
    (retryable), else 500 ``internal_error``. Never the exception's text: it may hold
    internals (a query, a path, a key); the log has the traceback."""
    kind = store_error_kind(exc)
    if kind == "full":
        log.error("store is full: %s", exc)
        return error_response(
            503,
            ErrorCode.STORE_FULL,
            "the store is out of space; retry later",
            {"Retry-After": str(STORE_FULL_RETRY_AFTER_S)},
        )
    if kind == "unavailable" or isinstance(exc, LockUnavailable):
        log.warning("store unavailable: %r", exc)
        return error_response(
            503,
            ErrorCode.STORE_UNAVAILABLE,
            "the store is unavailable; retry later",
            {"Retry-After": str(STORE_RETRY_AFTER_S)},
        )
    log.error("unexpected error", exc_info=exc)
    return error_response(500, ErrorCode.INTERNAL_ERROR, "internal error")


def hub_of(request: Request) -> Hub:
    return request.app.state.hub


def authenticate(request: Request, roles: set[Role]) -> Principal:
    """The caller, by platform API key or JWT; ApiError 401/403 otherwise.

    Only the API key is the platform: a JWT never is (``auth.verify`` refuses the role).
    A revoked token is refused like an invalid one.
    """
    settings = request.app.state.settings
    token = auth.bearer_token(request.headers.get("authorization"), None)
    if token is None:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "missing Authorization: Bearer header")
    try:
        try:
            principal = auth.check_platform_key(settings.platform_key.get_secret_value(), token)
        except AuthError:
            principal = auth.verify(request.app.state.keyring, token)
            request.app.state.tokens.check(principal)
    except AuthError as exc:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, exc.reason) from None
    if principal.role not in roles:
        allowed = ", ".join(sorted(r.value for r in roles))
        raise ApiError(
            403, ErrorCode.FORBIDDEN, f"role {principal.role.value} may not do this ({allowed} may)"
        )
    return principal


async def read_body(request: Request, kind: type[Any]) -> Any:
    body = await read_limited(request, MAX_BODY_BYTES)
    if not body.strip():
        body = b"{}"
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        numeric_bound = _NUMERIC_BOUND.search(text) or "out of range" in text
        code = ErrorCode.OUT_OF_RANGE if numeric_bound else ErrorCode.INVALID_FIELD
        raise ApiError(422, code, text) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, ErrorCode.INVALID_JSON, f"body is not valid JSON: {exc}") from None


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over ``limit``: from the
    ``Content-Length`` header before reading anything, or while streaming a chunked body,
    so a client cannot make the hub buffer (or wait for) more than the limit."""
    too_large = ApiError(413, ErrorCode.FRAME_TOO_LARGE, f"body is over {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large
        except ValueError:
            raise ApiError(400, ErrorCode.INVALID_FIELD, "bad Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def handles_errors(endpoint: Any) -> Any:
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except BookingClosed as exc:
            return error_response(409, exc.code, exc.message)
        except ProtocolError as exc:
            return error_response(422, exc.code, exc.message)
        except NotFound as exc:
            return error_response(404, ErrorCode.NOT_FOUND, str(exc))
        except Conflict as exc:
            return error_response(409, ErrorCode.CONFLICT, str(exc))
        except IllegalTransition as exc:
            return error_response(409, ErrorCode.ILLEGAL_TRANSITION, str(exc))
        except GeoJSONError as exc:
            return error_response(422, exc.code, exc.message)
        except NoCandidate as exc:
            return error_response(409, ErrorCode.NO_TECHNICIAN_AVAILABLE, str(exc))
        except TechnicianBusy as exc:
            return error_response(409, ErrorCode.TECHNICIAN_BUSY, str(exc))
        except IncidentNotFound as exc:
            return error_response(404, ErrorCode.NOT_FOUND, str(exc))
        except IllegalIncidentTransition as exc:
            return error_response(409, ErrorCode.ILLEGAL_TRANSITION, str(exc))
        except AlertNotFound as exc:
            return error_response(404, ErrorCode.NOT_FOUND, str(exc))
        except IllegalAlertTransition as exc:
            return error_response(409, ErrorCode.ILLEGAL_TRANSITION, str(exc))
        except Exception as exc:
            return unexpected_error_response(exc)

    return wrapper


def _in_range(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise ApiError(422, ErrorCode.OUT_OF_RANGE, f"{name} {value} is outside {low:g}..{high:g}")


# ------------------------------------------------------------------ tokens


def _minted(request: Request, role: Role, sub: str, booking: str | None, ttl_s: int) -> Response:
    minted = auth.issue(
        request.app.state.keyring,
        role=role,
        sub=sub,
        booking=booking,
        now=hub_of(request).clock(),
        ttl_s=ttl_s,
    )
    body: dict[str, Any] = {
        "token": minted.token,
        "expires_at": minted.exp,
        "role": role.value,
        "sub": sub,
        "jti": minted.jti,
    }
    if booking:
        body["booking"] = booking
    return JSONResponse(body, status_code=201)


def require_platform_key(request: Request) -> None:
    """Minting and revoking take the platform API key itself (a JWT is 401 here)."""
    settings = request.app.state.settings
    presented = auth.bearer_token(request.headers.get("authorization"), None)
    try:
        auth.check_platform_key(settings.platform_key.get_secret_value(), presented)
    except AuthError as exc:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, exc.reason) from None


@handles_errors
async def create_token(request: Request) -> Response:
    settings = request.app.state.settings
    require_platform_key(request)
    body: TokenIn = await read_body(request, TokenIn)
    if body.role is Role.PLATFORM:
        # The platform is whoever holds the API key; a platform JWT would be a second,
        # longer-lived, revocable-only-by-rotation copy of it.
        raise ApiError(
            422,
            ErrorCode.INVALID_FIELD,
            "role platform cannot be minted: the platform authenticates with its API key",
        )
    if body.role is Role.CUSTOMER and not body.booking:
        raise ApiError(422, ErrorCode.INVALID_FIELD, "customer tokens need a booking")
    return _minted(request, body.role, body.sub, body.booking, body.ttl_s or settings.token_ttl_s)


TOKEN_HOLDERS = {Role.TECHNICIAN, Role.CUSTOMER, Role.OPERATOR}


@handles_errors
async def refresh_token(request: Request) -> Response:
    """A new token for the holder of a still-valid one: same sub, role and booking, the
    default ttl, a new jti. Revoked tokens (by jti, or issued before their subject's
    revocation) are refused by ``authenticate``, so a revocation also ends refreshing."""
    principal = authenticate(request, TOKEN_HOLDERS)
    settings = request.app.state.settings
    if principal.role is Role.CUSTOMER and principal.booking is not None:
        # A customer's token lives as long as their hold on the booking: not past the grace
        # after it ended (an old tracking link must not be kept alive for ever).
        booking = await hub_of(request).bookings.get_booking(principal.booking)
        grace_s = settings.customer_sos_grace_s
        ended_s = booking.ended_for_customer(hub_of(request).clock(), grace_s) if booking else None
        if ended_s is not None:
            raise ApiError(
                403,
                ErrorCode.BOOKING_CLOSED,
                f"booking {principal.booking} ended {ended_s:.0f} s ago; no new token for it",
            )
    ttl_s = settings.token_ttl_s
    return _minted(request, principal.role, principal.sub, principal.booking, ttl_s)


class RevokeIn(msgspec.Struct, forbid_unknown_fields=True):
    jti: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    sub: Identifier | None = None


@handles_errors
async def revoke_token(request: Request) -> Response:
    """Revoke one token (``jti``) or every token of a subject issued until now (``sub``);
    matching open sockets are closed 4401 "token revoked" on every hub."""
    require_platform_key(request)
    body: RevokeIn = await read_body(request, RevokeIn)
    if (body.jti is None) == (body.sub is None):
        raise ApiError(422, ErrorCode.INVALID_FIELD, 'give exactly one of "jti" and "sub"')
    kind: Literal["jti", "sub"] = "jti" if body.jti is not None else "sub"
    name = body.jti if body.jti is not None else body.sub
    assert name is not None
    revocation = await request.app.state.tokens.revoke(kind, name)
    return JSONResponse({kind: name, "revoked_at": revocation.t})


# ------------------------------------------------------------------ bookings

BOOKING_ADMINS = {Role.PLATFORM, Role.OPERATOR}


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


def transition_endpoint(event: BookingEvent) -> Any:
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


# ------------------------------------------------------------------ technicians


@handles_errors
async def put_technician(request: Request) -> Response:
    authenticate(request, {Role.PLATFORM})
    body: ProfileIn = await read_body(request, ProfileIn)
    technician_id = _identifier(request.path_params["technician_id"])
    profile = TechnicianProfile(skills=tuple(sorted(set(body.skills))), name=body.name)
    await hub_of(request).profiles.put(technician_id, profile)
    return JSONResponse({"id": technician_id, **msgspec.to_builtins(profile)})


@handles_errors
async def get_technician(request: Request) -> Response:
    authenticate(request, BOOKING_ADMINS)
    hub = hub_of(request)
    technician_id = request.path_params["technician_id"]
    await hub.fleet.look_around([technician_id])
    profile = hub.profiles.get(technician_id)
    position = hub.fleet.last_position(technician_id)
    if profile is None and position is None:
        raise NotFound(f"technician {technician_id} is unknown")
    return JSONResponse(
        {
            "id": technician_id,
            **msgspec.to_builtins(profile or TechnicianProfile()),
            "online": hub.fleet.is_online(technician_id),
            "position": msgspec.to_builtins(position),
            "bookings": [b.id for b in hub.bookings.active_bookings_of(technician_id)],
        }
    )


def _identifier(value: str) -> str:
    try:
        return msgspec.convert(value, Identifier)
    except msgspec.ValidationError as exc:
        raise ApiError(422, ErrorCode.INVALID_FIELD, f"id: {exc}") from None


# ------------------------------------------------------------------ zones


@handles_errors
async def put_zone(request: Request) -> Response:
    authenticate(request, {Role.PLATFORM})
    zone_id = _identifier(request.path_params["zone_id"])
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


# ------------------------------------------------------------------ safety


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


class ContactsIn(msgspec.Struct, forbid_unknown_fields=True):
    contacts: list[Any]


REPORTERS = {Role.TECHNICIAN, Role.CUSTOMER}
PEOPLE_ROLES = {"technician", "customer"}


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
    authenticate(request, {Role.OPERATOR})
    incidents = hub_of(request).safety.open_incidents()
    return JSONResponse({"incidents": [msgspec.to_builtins(i) for i in incidents]})


@handles_errors
async def get_incident(request: Request) -> Response:
    authenticate(request, {Role.OPERATOR})
    incident = await hub_of(request).safety.get(request.path_params["incident_id"])
    if incident is None:
        raise NotFound("incident does not exist")
    return JSONResponse(msgspec.to_builtins(incident))


def incident_action(action: IncidentAction) -> Any:
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


@handles_errors
async def put_contacts(request: Request) -> Response:
    authenticate(request, {Role.PLATFORM})
    role, person = _person(request)
    body: ContactsIn = await read_body(request, ContactsIn)
    try:
        contacts = validate_contacts(body.contacts)
    except ContactError as exc:
        raise ApiError(422, exc.code, exc.message) from None
    await hub_of(request).safety.put_contacts(role, person, contacts)
    return JSONResponse({"contacts": msgspec.to_builtins(contacts)})


@handles_errors
async def get_contacts(request: Request) -> Response:
    principal = authenticate(request, {Role.PLATFORM, Role.OPERATOR})
    role, person = _person(request)
    hub = hub_of(request)
    # Audited before the read: if the audit cannot be written, nothing is shown.
    entry = AccessEntry(
        t=hub.clock(), actor=principal.actor, action="contacts_read", subject=person, role=role
    )
    await hub.store.append_access(entry)
    contacts = await hub.safety.contacts_of(role, person)
    return JSONResponse({"contacts": msgspec.to_builtins(contacts)})


def _person(request: Request) -> tuple[str, str]:
    role = request.path_params["role"]
    if role not in PEOPLE_ROLES:
        raise NotFound(f"unknown kind of person {role!r} (technician or customer)")
    return role, _identifier(request.path_params["person_id"])


# ------------------------------------------------------------------ history


def _time_param(request: Request, name: str, default: float | None) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(422, ErrorCode.INVALID_FIELD, f"{name} must be Unix seconds") from None
    if not math.isfinite(value):
        raise ApiError(422, ErrorCode.OUT_OF_RANGE, f"{name} must be finite")
    return value


@handles_errors
async def technician_track(request: Request) -> Response:
    """A technician's track: the last 24 h by default, at most 7 days per request unless an
    incident of the technician covers the range (docs/privacy.md); every read is audited."""
    principal = authenticate(request, BOOKING_ADMINS)
    hub = hub_of(request)
    technician_id = request.path_params["technician_id"]
    settings = hub.settings
    now = hub.clock()
    window_args: dict[str, Any] = {
        "now": now,
        "t_from": _time_param(request, "from", None),
        "t_to": _time_param(request, "to", None),
        "default_s": settings.track_default_window_s,
        "max_s": settings.track_max_window_s,
        "future_skew_s": settings.max_future_skew_s,
        "margin_s": settings.track_incident_margin_s,
    }
    try:
        window = track_window(**window_args)
    except WindowRefused:
        # Longer than a request may cover: allowed only for the review of an incident of
        # this technician (read only now, as long reads are rare).
        incidents = [
            i
            for i in await hub.store.incidents_about(technician_id)
            if i.technician_id == technician_id
        ]
        try:
            window = track_window(**window_args, incidents=incidents)
        except WindowRefused as exc:
            raise ApiError(422, ErrorCode.OUT_OF_RANGE, str(exc)) from None
    t_from, t_to = window.t_from, window.t_to
    detail: dict[str, Any] = {"from": t_from, "to": t_to}
    if window.incident_id is not None:
        detail["incident"] = window.incident_id
    # Audited before the read: if the audit cannot be written, nothing is shown.
    await hub.store.append_access(
        AccessEntry(
            t=now,
            actor=principal.actor,
            action="track_read",
            subject=technician_id,
            role="technician",
            detail=detail,
        )
    )
    cap = hub.settings.track_max_points
    fixes = await hub.store.track(technician_id, t_from, t_to, cap + 1)
    truncated = len(fixes) > cap
    fixes = fixes[:cap]
    coordinates = [(f.lon, f.lat) for f in fixes]
    if len(coordinates) >= 2:
        geometry: Any = geojson.LineString(coordinates)
    elif coordinates:
        geometry = geojson.Point(coordinates[0])
    else:
        geometry = None
    feature = geojson.Feature(
        geometry=geometry,
        properties={
            "technician_id": technician_id,
            "from": t_from,
            "to": t_to,
            "count": len(fixes),
            "truncated": truncated,
            "times": [f.t for f in fixes],
            "seqs": [f.seq for f in fixes],
            "accuracies": [f.acc for f in fixes],
        },
    )
    return JSONResponse(feature, media_type="application/geo+json")


# ------------------------------------------------------------------ health


# ------------------------------------------------------------------ app-wide error handlers
# For what no endpoint's ``handles_errors`` sees: unknown routes, wrong methods, and an
# exception raised outside an endpoint. Registered by ``realtime.app``.

_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's HTTPException (404 unknown route, 405 wrong method) as ``{code, message}``."""
    status = getattr(exc, "status_code", 500)
    code = _HTTP_CODES.get(
        status, ErrorCode.INVALID_FIELD if status < 500 else ErrorCode.INTERNAL_ERROR
    )
    detail = getattr(exc, "detail", None) or "error"
    if status == 404:
        detail = f"no route {request.url.path}"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return error_response(status, code, detail, dict(getattr(exc, "headers", None) or {}))


async def server_error_handler(request: Request, exc: Exception) -> Response:
    """Any exception that reached the app's edge: JSON, never a traceback."""
    return unexpected_error_response(exc)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    hub = hub_of(request)
    checks = {
        "hub": hub.ready,
        "history_writer": hub.history.healthy,
        "store": hub.backend.store_ok,
        "bus": hub.backend.bus_ok,
        "tasks": hub.backend.tasks_ok,
    }
    ok = all(checks.values())
    body: dict[str, Any] = {"status": "ready" if ok else "not_ready", "checks": checks}
    if hub.backend.store_error:
        body["store_error"] = hub.backend.store_error  # store_full or store_unavailable
    down = hub.tasks.down()
    if down:
        body["tasks_down"] = down  # which background tasks are restarting
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/v1/sos", post_sos, methods=["POST"]),
    Route("/v1/sos/{sos_id}", get_sos, methods=["GET"]),
    Route("/v1/sos/{sos_id}/cancel", cancel_sos, methods=["POST"]),
    Route("/v1/incidents", list_incidents, methods=["GET"]),
    Route("/v1/incidents/{incident_id}", get_incident, methods=["GET"]),
    Route("/v1/incidents/{incident_id}/ack", incident_action(IncidentAction.ACK), methods=["POST"]),
    Route(
        "/v1/incidents/{incident_id}/resolve",
        incident_action(IncidentAction.RESOLVE),
        methods=["POST"],
    ),
    Route("/v1/alerts", list_alerts, methods=["GET"]),
    Route("/v1/alerts/{alert_id}", get_alert, methods=["GET"]),
    Route("/v1/alerts/{alert_id}/ack", ack_alert, methods=["POST"]),
    Route("/v1/people/{role}/{person_id}/contacts", put_contacts, methods=["PUT"]),
    Route("/v1/people/{role}/{person_id}/contacts", get_contacts, methods=["GET"]),
    Route("/v1/tokens", create_token, methods=["POST"]),
    Route("/v1/tokens/refresh", refresh_token, methods=["POST"]),
    Route("/v1/tokens/revoke", revoke_token, methods=["POST"]),
    Route("/v1/bookings", create_booking, methods=["POST"]),
    Route("/v1/bookings/{booking_id}", read_booking, methods=["GET"]),
    Route(
        "/v1/bookings/{booking_id}/assign",
        transition_endpoint(BookingEvent.ASSIGN),
        methods=["POST"],
    ),
    Route(
        "/v1/bookings/{booking_id}/en_route",
        transition_endpoint(BookingEvent.EN_ROUTE),
        methods=["POST"],
    ),
    Route(
        "/v1/bookings/{booking_id}/arrive",
        transition_endpoint(BookingEvent.CHECK_IN),
        methods=["POST"],
    ),
    Route(
        "/v1/bookings/{booking_id}/start",
        transition_endpoint(BookingEvent.START_SERVICE),
        methods=["POST"],
    ),
    Route(
        "/v1/bookings/{booking_id}/complete",
        transition_endpoint(BookingEvent.CHECK_OUT),
        methods=["POST"],
    ),
    Route(
        "/v1/bookings/{booking_id}/cancel",
        transition_endpoint(BookingEvent.CANCEL),
        methods=["POST"],
    ),
    Route("/v1/bookings/{booking_id}/dispatch", dispatch_booking, methods=["POST"]),
    Route("/v1/technicians/{technician_id}", put_technician, methods=["PUT"]),
    Route("/v1/technicians/{technician_id}", get_technician, methods=["GET"]),
    Route("/v1/technicians/{technician_id}/track", technician_track, methods=["GET"]),
    Route("/v1/zones", list_zones, methods=["GET"]),
    Route("/v1/zones/{zone_id}", put_zone, methods=["PUT"]),
    Route("/v1/zones/{zone_id}", get_zone, methods=["GET"]),
    Route("/v1/zones/{zone_id}", delete_zone, methods=["DELETE"]),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics),
]
