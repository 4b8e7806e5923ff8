"""JWT tokens (HS256, PyJWT): minting for the platform, verification for every endpoint.

Claims: ``sub``, ``role``, ``booking`` (customer tokens are scoped to one booking), ``exp``,
``iat``. Time is passed in when minting; verification uses PyJWT's own expiry check.
"""

from __future__ import annotations

import hmac
import reprlib
from dataclasses import dataclass
from enum import StrEnum

import jwt

ALGORITHM = "HS256"


class Role(StrEnum):
    TECHNICIAN = "technician"
    CUSTOMER = "customer"
    OPERATOR = "operator"
    PLATFORM = "platform"


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a token or the platform API key."""

    sub: str
    role: Role
    booking: str | None = None

    @property
    def actor(self) -> str:
        """The name written into audit trails."""
        return f"{self.role.value}:{self.sub}"


class AuthError(Exception):
    """Authentication failed (401 / close 4401) or is not enough (403 / close 4403)."""

    def __init__(self, reason: str, *, forbidden: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.forbidden = forbidden


def mint(
    secret: str, *, role: Role, sub: str, now: float, ttl_s: int, booking: str | None = None
) -> tuple[str, int]:
    """A signed token and its expiry time (Unix seconds)."""
    if not sub:
        raise ValueError("sub must not be empty")
    if role is Role.CUSTOMER and not booking:
        raise ValueError("customer tokens must be scoped to a booking")
    exp = int(now + ttl_s)
    claims: dict[str, object] = {"sub": sub, "role": role.value, "iat": int(now), "exp": exp}
    if booking:
        claims["booking"] = booking
    return jwt.encode(claims, secret, algorithm=ALGORITHM), exp


def verify(secret: str, token: str) -> Principal:
    """Check signature, expiry and claims; raise AuthError with a reason a client can show."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "role"]}
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token is missing the {exc.claim!r} claim") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"token is invalid: {exc}") from None
    try:
        role = Role(claims["role"])
    except ValueError:
        raise AuthError(f"token has an unknown role {reprlib.repr(claims['role'])}") from None
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        # mint() refuses an empty sub; a hand-made token must not smuggle one in.
        raise AuthError("token's 'sub' claim must be a non-empty string")
    booking = claims.get("booking")
    if booking is not None and not isinstance(booking, str):
        raise AuthError("token's 'booking' claim must be a string")
    if role is Role.CUSTOMER and not booking:
        raise AuthError("customer token is not scoped to a booking")
    return Principal(sub=sub, role=role, booking=booking)


def check_platform_key(expected: str, presented: str | None) -> Principal:
    """The platform backend authenticates with its API key (constant-time comparison)."""
    if not presented or not hmac.compare_digest(expected.encode(), presented.encode()):
        raise AuthError("platform API key is missing or wrong")
    return Principal(sub="platform", role=Role.PLATFORM)


def bearer_token(authorization: str | None, query_token: str | None) -> str | None:
    """The token from ``Authorization: Bearer`` or, for browsers' WebSockets, ``?token=``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None
