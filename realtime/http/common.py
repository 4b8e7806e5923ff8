"""What every HTTP endpoint shares: authentication, body decoding, validators, error answers.

Errors are JSON bodies ``{"code": ..., "message": ...}`` with the same stable codes as the
WebSocket ``error`` frames (docs/protocol.md). An endpoint raises (``ApiError`` or a domain
exception) and ``handles_errors`` turns it into that answer; a store that is away or full is
a retryable 503 with ``Retry-After``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alerts.incident import IllegalIncidentTransition
from alerts.safety_alert import IllegalAlertTransition
from geofence.fences import GeoJSONError
from realtime import auth
from realtime.alerting import AlertNotFound
from realtime.auth import AuthError, Principal, Role
from realtime.backends.base import LockUnavailable, store_error_kind
from realtime.booking import IllegalTransition
from realtime.bookings_desk import Conflict, NotFound, TechnicianBusy
from realtime.cities import UnknownCity
from realtime.dispatcher import NoCandidate
from realtime.hub import Hub
from realtime.protocol import ErrorCode, ProtocolError
from realtime.quotes import QuoteExpired, QuoteMismatch, UnknownQuote
from realtime.safety import BookingClosed, IncidentNotFound

Endpoint = Callable[[Request], Awaitable[Response]]

Identifier = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
]
log = logging.getLogger("doorstep.http")

# Who may read and steer bookings, technicians and zones (the platform and its operators).
BOOKING_ADMINS = {Role.PLATFORM, Role.OPERATOR}

MAX_BODY_BYTES = 64 * 1024
# msgspec's wording for a numeric constraint (``Expected `int` >= 60``): an out-of-range value.
_NUMERIC_BOUND = re.compile(r"Expected `(int|float)` [<>]=? ")

# Retry-After on a 503 from the store: a Redis reconnect or failover takes seconds; a full
# disk takes an operator, so clients come back later.
STORE_RETRY_AFTER_S = 2
STORE_FULL_RETRY_AFTER_S = 30


class ApiError(Exception):
    """A refusal with its HTTP status and stable code, raised anywhere in an endpoint."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


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


def require_platform_key(request: Request) -> None:
    """Minting and revoking take the platform API key itself (a JWT is 401 here)."""
    settings = request.app.state.settings
    presented = auth.bearer_token(request.headers.get("authorization"), None)
    try:
        auth.check_platform_key(settings.platform_key.get_secret_value(), presented)
    except AuthError as exc:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, exc.reason) from None


async def read_body(request: Request, kind: type[Any]) -> Any:
    """The JSON body decoded as ``kind`` (an empty body is ``{}``); 400/413/422 otherwise."""
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


def checked_identifier(value: str) -> str:
    """An id from a path or query (same rule as ids in bodies); 422 ``invalid_field``."""
    try:
        return msgspec.convert(value, Identifier)
    except msgspec.ValidationError as exc:
        raise ApiError(422, ErrorCode.INVALID_FIELD, f"id: {exc}") from None


def handles_errors(endpoint: Endpoint) -> Endpoint:
    """The endpoint, with every refusal and domain error answered as ``{code, message}``."""

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
        except UnknownCity as exc:
            return error_response(422, ErrorCode.UNKNOWN_CITY, str(exc))
        except UnknownQuote as exc:
            return error_response(422, ErrorCode.UNKNOWN_QUOTE, str(exc))
        except QuoteExpired as exc:
            return error_response(409, ErrorCode.QUOTE_EXPIRED, str(exc))
        except QuoteMismatch as exc:
            return error_response(422, ErrorCode.INVALID_FIELD, str(exc))
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
