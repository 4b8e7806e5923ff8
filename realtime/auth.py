"""JWT tokens (HS256, PyJWT): minting for the platform, verification for every endpoint.

Claims: ``sub``, ``role``, ``booking`` (customer tokens are scoped to one booking), ``exp``,
``iat``, ``jti`` (a uuid4 hex: what revocation names), ``iss`` and ``aud`` (checked, so a
token of another system signed with a shared key is not ours). The header carries ``kid``,
the id of the signing key: ``DOORSTEP_SECRET`` may hold several keys (rotation), new tokens
are signed with the first and every listed one is accepted.

Time is passed in when minting; verification uses PyJWT's own expiry check. The platform
role is never a token: the platform is whoever holds the API key.
"""

from __future__ import annotations

import hashlib
import hmac
import reprlib
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import jwt

ALGORITHM = "HS256"
DEFAULT_ISSUER = "doorstep"
DEFAULT_AUDIENCE = "doorstep"
# HS256 keys shorter than the hash output are guessable offline from one token (RFC 7518 3.2).
MIN_KEY_BYTES = 32
# The longest ttl anyone may mint (POST /v1/tokens, DOORSTEP_TOKEN_TTL_S): revocations are
# kept this long, after which every token they could match has expired anyway.
MAX_TTL_S = 30 * 24 * 3600
_REQUIRED = ["exp", "iat", "sub", "role", "jti", "iss", "aud"]


class Role(StrEnum):
    TECHNICIAN = "technician"
    CUSTOMER = "customer"
    OPERATOR = "operator"
    PLATFORM = "platform"


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a token or the platform API key.

    ``jti``, ``iat`` and ``exp`` are the token's (None for the API key): what revocation and
    the expiry timer of an open socket go by.
    """

    sub: str
    role: Role
    booking: str | None = None
    jti: str | None = None
    iat: float | None = None
    exp: float | None = None
    # An operator's group: they watch the cities whose ``operator_group`` it is (and the
    # cities with none). None: every city (a supervisor, a single-team deployment).
    group: str | None = None

    def watches(self, audience: str | None) -> bool:
        """Whether this caller sees what is meant for ``audience`` (an operator group)."""
        return self.group is None or audience is None or audience == self.group

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


def key_id(key: str) -> str:
    """A short stable id of a signing key (public: it names the key, it does not reveal it)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def split_keys(secret: str) -> list[str]:
    """``DOORSTEP_SECRET``'s keys, comma-separated, first one signs; ValueError if unfit."""
    keys = [key.strip() for key in secret.split(",")]
    if not any(keys):
        raise ValueError("must hold at least one key")
    for index, key in enumerate(keys, 1):
        if len(key.encode()) < MIN_KEY_BYTES:
            # Never echo the key itself: this message ends up on a terminal or in a log.
            raise ValueError(
                f"key {index} of {len(keys)} is {len(key.encode())} bytes; at least"
                f" {MIN_KEY_BYTES} bytes are needed (generate one with"
                " `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
    return keys


class Keyring:
    """The signing keys by kid: sign with the first, verify with the one the token names."""

    def __init__(
        self, secret: str, *, issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE
    ) -> None:
        keys = split_keys(secret)
        self.signing_key = keys[0]
        self.signing_kid = key_id(keys[0])
        self.keys = {key_id(key): key for key in keys}
        self.issuer = issuer
        self.audience = audience


class Minted(NamedTuple):
    token: str
    exp: int
    jti: str


def _keyring(keys: Keyring | str) -> Keyring:
    return keys if isinstance(keys, Keyring) else Keyring(keys)


def issue(
    keys: Keyring | str,
    *,
    role: Role,
    sub: str,
    now: float,
    ttl_s: int,
    booking: str | None = None,
    group: str | None = None,
) -> Minted:
    """A signed token with a fresh ``jti``. ``iat`` keeps milliseconds: a revocation by
    subject refuses tokens issued before it, and one minted just after it in the same
    second must still work."""
    ring = _keyring(keys)
    if not sub:
        raise ValueError("sub must not be empty")
    if role is Role.PLATFORM:
        raise ValueError("the platform authenticates with its API key, not with a token")
    if role is Role.CUSTOMER and not booking:
        raise ValueError("customer tokens must be scoped to a booking")
    exp = int(now + ttl_s)
    jti = uuid.uuid4().hex
    claims: dict[str, object] = {
        "sub": sub,
        "role": role.value,
        "iat": round(now, 3),
        "exp": exp,
        "jti": jti,
        "iss": ring.issuer,
        "aud": ring.audience,
    }
    if booking:
        claims["booking"] = booking
    if group:
        if role is not Role.OPERATOR:
            raise ValueError("only operator tokens carry a group")
        claims["group"] = group
    token = jwt.encode(
        claims, ring.signing_key, algorithm=ALGORITHM, headers={"kid": ring.signing_kid}
    )
    return Minted(token, exp, jti)


def mint(
    keys: Keyring | str,
    *,
    role: Role,
    sub: str,
    now: float,
    ttl_s: int,
    booking: str | None = None,
) -> tuple[str, int]:
    """A signed token and its expiry time (Unix seconds); see ``issue``."""
    minted = issue(keys, role=role, sub=sub, now=now, ttl_s=ttl_s, booking=booking)
    return minted.token, minted.exp


def _candidate_keys(ring: Keyring, token: str) -> list[str]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"token is invalid: {exc}") from None
    kid = header.get("kid")
    if kid is None:
        return list(ring.keys.values())  # minted before kids existed: try every key
    if not isinstance(kid, str) or kid not in ring.keys:
        # A retired key (or a token of another system): its signature cannot be checked.
        raise AuthError("token signature is invalid (unknown signing key)")
    return [ring.keys[kid]]


def _decode(ring: Keyring, token: str) -> dict[str, object]:
    keys = _candidate_keys(ring, token)
    for index, key in enumerate(keys):
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=ring.issuer,
                audience=ring.audience,
                options={"require": _REQUIRED},
            )
        except jwt.InvalidSignatureError:
            if index == len(keys) - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def verify(keys: Keyring | str, token: str) -> Principal:
    """Check signature, expiry and claims; raise AuthError with a reason a client can show."""
    ring = _keyring(keys)
    try:
        claims = _decode(ring, token)
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token is missing the {exc.claim!r} claim") from None
    except jwt.InvalidIssuerError:
        raise AuthError("token has the wrong issuer") from None
    except jwt.InvalidAudienceError:
        raise AuthError("token has the wrong audience") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"token is invalid: {exc}") from None
    try:
        role = Role(claims["role"])
    except ValueError:
        raise AuthError(f"token has an unknown role {reprlib.repr(claims['role'])}") from None
    if role is Role.PLATFORM:
        # Only the API key is the platform: a token that says so is refused outright, so a
        # leaked or hand-made platform JWT can never do what the key does.
        raise AuthError("platform tokens are not accepted: the platform uses its API key")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        # mint() refuses an empty sub; a hand-made token must not smuggle one in.
        raise AuthError("token's 'sub' claim must be a non-empty string")
    booking = claims.get("booking")
    if booking is not None and not isinstance(booking, str):
        raise AuthError("token's 'booking' claim must be a string")
    if role is Role.CUSTOMER and not booking:
        raise AuthError("customer token is not scoped to a booking")
    group = claims.get("group")
    if group is not None and (not isinstance(group, str) or role is not Role.OPERATOR):
        raise AuthError("token's 'group' claim must be a string, on an operator token")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti:
        raise AuthError("token's 'jti' claim must be a non-empty string")
    iat, exp = claims["iat"], claims["exp"]
    assert isinstance(iat, int | float) and isinstance(exp, int | float)  # PyJWT checked
    return Principal(
        sub=sub,
        role=role,
        booking=booking,
        jti=jti,
        iat=float(iat),
        exp=float(exp),
        group=group,
    )


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
