"""POST /v1/tokens, /v1/tokens/refresh and /v1/tokens/revoke: the JWTs that open sockets
and the REST API to technicians, customers and operators (docs/protocol.md, "Tokens")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from realtime import auth
from realtime.auth import Role
from realtime.http.common import (
    ApiError,
    Identifier,
    authenticate,
    handles_errors,
    hub_of,
    read_body,
    require_platform_key,
)
from realtime.protocol import ErrorCode

TOKEN_HOLDERS = {Role.TECHNICIAN, Role.CUSTOMER, Role.OPERATOR}


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    role: Role
    sub: Identifier
    booking: Identifier | None = None
    ttl_s: Annotated[int, msgspec.Meta(ge=60, le=30 * 24 * 3600)] | None = None
    # Operators only: the operator group whose cities they watch (docs/protocol.md).
    group: Identifier | None = None


class RevokeIn(msgspec.Struct, forbid_unknown_fields=True):
    jti: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    sub: Identifier | None = None


def _minted(
    request: Request,
    role: Role,
    sub: str,
    booking: str | None,
    ttl_s: int,
    group: str | None = None,
) -> Response:
    minted = auth.issue(
        request.app.state.keyring,
        role=role,
        sub=sub,
        booking=booking,
        group=group,
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
    if group:
        body["group"] = group
    return JSONResponse(body, status_code=201)


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
    if body.group is not None and body.role is not Role.OPERATOR:
        raise ApiError(422, ErrorCode.INVALID_FIELD, "only operator tokens carry a group")
    ttl_s = body.ttl_s or settings.token_ttl_s
    return _minted(request, body.role, body.sub, body.booking, ttl_s, body.group)


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
    return _minted(
        request, principal.role, principal.sub, principal.booking, ttl_s, principal.group
    )


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
