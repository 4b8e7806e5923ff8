"""The authorization matrix: every caller x every REST endpoint and every socket message type.

One table says who may do what; the tests walk it against one real hub (uvicorn, real HTTP and
WebSocket clients). A refusal must carry the documented status and code: 401 ``unauthorized``
for a credential that proves nothing (expired, revoked, unsigned, a platform-role JWT: only the
API key is the platform), 403 ``forbidden`` for a good credential of the wrong role, 404
``not_found`` where "not yours" must look like "absent" (another customer's booking). On
sockets the same refusals are close codes 4401 / 4403; inside an open socket a message type
the role may not send is an ``error`` frame (``unknown_type`` or ``forbidden``) and the socket
stays up.

"Allowed" means the hub did not refuse the caller: the call may still fail on its merits
(409 for an illegal transition, 404 for an unknown incident), never with 401/403 and never
with a 5xx.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from starlette.routing import Match, Route
from websockets.exceptions import ConnectionClosed

from realtime.app import create_app
from tests.conftest import PLATFORM_KEY, SECRET, RunningHub, make_settings, receive_json

pytestmark = pytest.mark.asyncio(loop_scope="module")

# ------------------------------------------------------------------ the callers

PLATFORM_KEY_ROW = "platform key"
PLATFORM_JWT = "platform JWT"
OPERATOR = "operator"
TECHNICIAN = "technician"
CUSTOMER = "customer of the booking"
OTHER_CUSTOMER = "customer of another booking"
EXPIRED = "expired"
REVOKED = "revoked"
UNSIGNED = "unsigned"

CALLERS = [
    PLATFORM_KEY_ROW,
    PLATFORM_JWT,
    OPERATOR,
    TECHNICIAN,
    CUSTOMER,
    OTHER_CUSTOMER,
    EXPIRED,
    REVOKED,
    UNSIGNED,
]
# Credentials that prove nothing: refused 401 / 4401 everywhere auth is asked for.
UNPROVEN = {PLATFORM_JWT, EXPIRED, REVOKED, UNSIGNED}
JWT_HOLDERS = {OPERATOR, TECHNICIAN, CUSTOMER, OTHER_CUSTOMER}
EVERYONE = set(CALLERS)
ADMINS = {PLATFORM_KEY_ROW, OPERATOR}
REPORTERS = {TECHNICIAN, CUSTOMER, OTHER_CUSTOMER}

BOOKING = "b-mx"  # technician tech-mx, customer cust-mx
OTHER_BOOKING = "b-my"  # customer cust-my, unassigned
TECHNICIAN_ID = "tech-mx"


async def _mint(hub: RunningHub, role: str, sub: str, booking: str | None = None) -> str:
    return await hub.token(role, sub, booking, ttl=3600)


def _hand_signed(claims: dict[str, Any], key: str | None, algorithm: str) -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


async def credentials(hub: RunningHub) -> dict[str, str | None]:
    """One credential per caller; the revoked one is revoked through the platform API."""
    minted = await _mint(hub, "operator", "op-minted")
    now = int(time.time())
    # Claims as the hub writes them (iss, aud, kid, jti), so only the one spoiled thing counts.
    valid = jwt.decode(minted, options={"verify_signature": False})
    header = jwt.get_unverified_header(minted)
    revoked = await _mint(hub, "operator", "op-revoked")
    revoked_jti = jwt.decode(revoked, options={"verify_signature": False})["jti"]
    async with hub.client() as http:
        answer = await http.post("/v1/tokens/revoke", json={"jti": revoked_jti})
        assert answer.status_code == 200, answer.text
    return {
        PLATFORM_KEY_ROW: PLATFORM_KEY,
        # Correctly signed with the hub's key, but the platform is the API key, never a JWT.
        PLATFORM_JWT: jwt.encode(
            {**valid, "sub": "backend", "role": "platform", "jti": uuid.uuid4().hex},
            SECRET.split(",")[0],
            algorithm="HS256",
            headers={k: v for k, v in header.items() if k == "kid"},
        ),
        OPERATOR: minted,
        TECHNICIAN: await _mint(hub, "technician", TECHNICIAN_ID),
        CUSTOMER: await _mint(hub, "customer", "cust-mx", BOOKING),
        OTHER_CUSTOMER: await _mint(hub, "customer", "cust-my", OTHER_BOOKING),
        EXPIRED: jwt.encode(
            {**valid, "iat": now - 7200, "exp": now - 3600, "jti": uuid.uuid4().hex},
            SECRET.split(",")[0],
            algorithm="HS256",
            headers={k: v for k, v in header.items() if k == "kid"},
        ),
        REVOKED: revoked,
        UNSIGNED: _hand_signed({**valid, "jti": uuid.uuid4().hex}, None, "none"),
    }


@dataclass
class World:
    hub: RunningHub
    tokens: dict[str, str | None]
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    async def fresh_booking(self, **body: Any) -> str:
        """A booking of its own for a call that changes it (so the table's order is free)."""
        booking_id = f"b-fresh-{next(self.counter)}"
        await self.hub.create_booking(id=booking_id, customer_id="cust-fresh", **body)
        return booking_id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    running = RunningHub(make_settings(tmp_path_factory.mktemp("matrix")))
    await running.start()
    await running.create_booking(id=BOOKING, customer_id="cust-mx", technician_id=TECHNICIAN_ID)
    await running.create_booking(id=OTHER_BOOKING, customer_id="cust-my")
    async with running.client() as http:
        zone = {"type": "Polygon", "coordinates": [[[13, 52], [13.1, 52], [13.1, 52.1], [13, 52]]]}
        assert (await http.put("/v1/zones/z-mx", json=zone)).status_code == 200
    yield World(running, await credentials(running))
    await running.stop()


# ------------------------------------------------------------------ REST

Prepare = Callable[[World], Any]


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # may hold {fresh}: a new booking is made for each caller
    allowed: frozenset[str]
    body: Any = None
    # Callers whose refusal is not the default (401 for UNPROVEN, 403 for the rest).
    refusals: tuple[tuple[str, int, str], ...] = ()
    needs_auth: bool = True
    fresh: dict[str, Any] = field(default_factory=dict)  # body of the {fresh} booking

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


def call(method: str, path: str, allowed: set[str], body: Any = None, **options: Any) -> Call:
    return Call(method, path, frozenset(allowed), body, **options)


TOKENS_ONLY_BY_KEY = tuple((c, 401, "unauthorized") for c in JWT_HOLDERS)

CALLS: list[Call] = [
    # Tokens: minting and revoking take the platform API key itself, so a JWT is 401 there.
    call(
        "POST",
        "/v1/tokens",
        {PLATFORM_KEY_ROW},
        {"role": "operator", "sub": "op-2"},
        refusals=TOKENS_ONLY_BY_KEY,
    ),
    call(
        "POST",
        "/v1/tokens/revoke",
        {PLATFORM_KEY_ROW},
        {"jti": "0" * 32},
        refusals=TOKENS_ONLY_BY_KEY,
    ),
    call(
        "POST", "/v1/tokens/refresh", JWT_HOLDERS, refusals=((PLATFORM_KEY_ROW, 403, "forbidden"),)
    ),
    # Bookings.
    call(
        "POST",
        "/v1/bookings",
        {PLATFORM_KEY_ROW},
        {"customer_id": "c-9", "destination": {"lat": 52.5, "lon": 13.4}},
    ),
    call(
        "GET",
        f"/v1/bookings/{BOOKING}",
        ADMINS | {TECHNICIAN, CUSTOMER},
        refusals=((OTHER_CUSTOMER, 404, "not_found"),),
    ),
    call("POST", "/v1/bookings/{fresh}/assign", ADMINS, {"technician_id": "tech-9"}),
    call("POST", "/v1/bookings/{fresh}/en_route", ADMINS, fresh={"technician_id": "tech-en"}),
    call("POST", "/v1/bookings/{fresh}/arrive", ADMINS, fresh={"technician_id": "tech-ar"}),
    call("POST", "/v1/bookings/{fresh}/start", ADMINS),
    call("POST", "/v1/bookings/{fresh}/complete", ADMINS),
    call("POST", "/v1/bookings/{fresh}/cancel", ADMINS),
    call("POST", "/v1/bookings/{fresh}/dispatch?dry_run=1", ADMINS),
    call("POST", "/v1/bookings/{fresh}/quote", ADMINS, {"quote_id": "q-none"}),
    call("POST", "/v1/dispatch/batch?dry_run=1", ADMINS, {}),
    # Travel-fee quotes and cities.
    call(
        "POST",
        "/v1/quotes/travel",
        ADMINS,
        {"origin": {"lat": 52.5, "lon": 13.4}, "destination": {"lat": 52.51, "lon": 13.41}},
    ),
    call("GET", "/v1/quotes/q-none", ADMINS),
    call("GET", "/v1/cities", ADMINS),
    call("GET", "/v1/stats", ADMINS),
    call("GET", "/v1/cities/default", ADMINS),
    call(
        "PUT", "/v1/cities/c-9", {PLATFORM_KEY_ROW}, {"name": "Nine", "timezone": "Europe/Berlin"}
    ),
    # Technicians.
    call("PUT", "/v1/technicians/tech-9", {PLATFORM_KEY_ROW}, {"skills": ["plumbing"]}),
    call("GET", f"/v1/technicians/{TECHNICIAN_ID}", ADMINS),
    call("GET", f"/v1/technicians/{TECHNICIAN_ID}/track", ADMINS),
    # Zones.
    call("GET", "/v1/zones", ADMINS),
    call("GET", "/v1/zones/z-mx", ADMINS),
    call(
        "PUT",
        "/v1/zones/z-9",
        {PLATFORM_KEY_ROW},
        {"type": "Polygon", "coordinates": [[[13, 52], [13.1, 52], [13.1, 52.1], [13, 52]]]},
    ),
    call("DELETE", "/v1/zones/z-gone", {PLATFORM_KEY_ROW}),
    # SOS (reporters) and incidents (operators).
    call("POST", "/v1/sos", REPORTERS, {"id": "{uuid}", "t": "{now}"}),
    call("GET", "/v1/sos/00000000-0000-4000-8000-000000000000", REPORTERS),
    call("POST", "/v1/sos/00000000-0000-4000-8000-000000000000/cancel", REPORTERS),
    call("GET", "/v1/incidents", {OPERATOR}),
    call("GET", "/v1/incidents/inc-none", {OPERATOR}),
    call("POST", "/v1/incidents/inc-none/ack", {OPERATOR}),
    call("POST", "/v1/incidents/inc-none/resolve", {OPERATOR}, {"outcome": "false_alarm"}),
    call("GET", "/v1/alerts", {OPERATOR}),
    call("GET", "/v1/alerts/al-none", {OPERATOR}),
    call("POST", "/v1/alerts/al-none/ack", {OPERATOR}),
    # People: contacts, erasure, the audit of reads.
    call(
        "PUT",
        "/v1/people/technician/tech-9/contacts",
        {PLATFORM_KEY_ROW},
        {"contacts": [{"name": "Ana", "phone": "+4915112345678"}]},
    ),
    call("GET", "/v1/people/technician/tech-9/contacts", ADMINS),
    call("DELETE", "/v1/people/technician/tech-gone/data", {PLATFORM_KEY_ROW}),
    call("GET", f"/v1/audit?subject={TECHNICIAN_ID}", {PLATFORM_KEY_ROW}),
    # Open to everyone by design: probes, metrics and the pages (they read their token in JS).
    call("GET", "/healthz", EVERYONE, needs_auth=False),
    call("GET", "/readyz", EVERYONE, needs_auth=False),
    call("GET", "/metrics", EVERYONE, needs_auth=False),
    call("GET", "/openapi.json", EVERYONE, needs_auth=False),
    call("GET", "/asyncapi.json", EVERYONE, needs_auth=False),
    call("GET", "/track", EVERYONE, needs_auth=False),
    call("GET", "/console", EVERYONE, needs_auth=False),
    call("GET", "/dashboard", EVERYONE, needs_auth=False),
    call("GET", "/tech", EVERYONE, needs_auth=False),
    call("GET", "/", EVERYONE, needs_auth=False),
]


def expected_refusal(entry: Call, caller: str) -> tuple[int, str] | None:
    """``None`` when the caller is allowed, else the status and code the hub must answer."""
    if caller in entry.allowed:
        return None
    for who, status, code in entry.refusals:
        if who == caller:
            return status, code
    if caller in UNPROVEN:
        return 401, "unauthorized"
    return 403, "forbidden"


def _filled(value: Any) -> Any:
    if value == "{uuid}":
        return str(uuid.uuid4())
    if value == "{now}":
        return time.time()
    if isinstance(value, dict):
        return {k: _filled(v) for k, v in value.items()}
    return value


async def _request(world: World, entry: Call, caller: str) -> httpx.Response:
    path = entry.path
    if "{fresh}" in path:
        path = path.replace("{fresh}", await world.fresh_booking(**entry.fresh))
    token = world.tokens[caller]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=world.hub.http, timeout=10) as http:
        body = _filled(entry.body)
        kwargs: dict[str, Any] = {"headers": headers}
        if entry.method in ("POST", "PUT"):
            kwargs["json"] = body if body is not None else {}
        return await http.request(entry.method, path, **kwargs)


@pytest.mark.parametrize("entry", CALLS, ids=[c.name for c in CALLS])
async def test_rest_endpoint_admits_exactly_its_callers(world: World, entry: Call) -> None:
    wrong: list[str] = []
    for caller in CALLERS:
        response = await _request(world, entry, caller)
        refusal = expected_refusal(entry, caller)
        if response.status_code >= 500:
            wrong.append(f"{caller}: {response.status_code} {response.text[:200]}")
            continue
        if refusal is None:
            if response.status_code in (401, 403):
                wrong.append(f"{caller}: refused {response.status_code} {response.text[:200]}")
            continue
        status, code = refusal
        try:
            answer = response.json()
        except json.JSONDecodeError:
            answer = {}
        if response.status_code != status or answer.get("code") != code:
            wrong.append(
                f"{caller}: expected {status} {code}, got {response.status_code} "
                f"{response.text[:200]}"
            )
    assert not wrong, f"{entry.name}:\n" + "\n".join(wrong)


async def test_every_route_of_the_hub_is_in_the_table(tmp_path: Path) -> None:
    """A new endpoint cannot ship without a row here: every HTTP route of the app is matched
    by at least one call of the table (same method, a path the route matches)."""
    app = create_app(make_settings(tmp_path))
    missing = []
    for route in app.routes:
        if not isinstance(route, Route):
            continue  # the sockets (their own table below) and the static files mount
        for method in (route.methods or set()) - {"HEAD"}:
            if not any(_matches(route, method, entry) for entry in CALLS):
                missing.append(f"{method} {route.path}")
    assert not missing, f"endpoints with no row in the matrix: {missing}"


def _matches(route: Route, method: str, entry: Call) -> bool:
    path = entry.path.split("?")[0].replace("{fresh}", "b-any")
    scope = {"type": "http", "method": entry.method, "path": path}
    match, _ = route.matches(scope)
    return entry.method == method and match is Match.FULL


# ------------------------------------------------------------------ sockets

SOCKETS: dict[str, tuple[str, set[str], dict[str, int]]] = {
    # path, callers it opens for, refusal close codes for the others
    "technician": ("/v1/ws/technician", {TECHNICIAN}, {}),
    "booking": (f"/v1/ws/bookings/{BOOKING}", {CUSTOMER, OPERATOR}, {}),
    "ops": ("/v1/ws/ops", {OPERATOR}, {}),
}


def socket_refusal(socket: str, caller: str) -> int | None:
    _, allowed, _ = SOCKETS[socket]
    if caller in allowed:
        return None
    if caller in UNPROVEN or caller == PLATFORM_KEY_ROW:
        return 4401  # the API key is not a token
    return 4403


async def _close_code(client: Any) -> int:
    with pytest.raises(ConnectionClosed) as caught:
        message = await asyncio.wait_for(client.recv(), 5)
        pytest.fail(f"the hub sent {message!r} instead of closing")
    assert caught.value.rcvd is not None
    return caught.value.rcvd.code


@pytest.mark.parametrize("socket", list(SOCKETS))
async def test_socket_opens_for_exactly_its_callers(world: World, socket: str) -> None:
    path, _, _ = SOCKETS[socket]
    wrong = []
    for caller in CALLERS:
        client = await world.hub.connect(path, world.tokens[caller])
        try:
            expected = socket_refusal(socket, caller)
            if expected is None:
                first = await receive_json(client)
                if first["type"] not in ("ack", "snapshot"):
                    wrong.append(f"{caller}: opened but first sent {first}")
            else:
                code = await _close_code(client)
                if code != expected:
                    wrong.append(f"{caller}: expected close {expected}, got {code}")
        except ConnectionClosed as exc:
            wrong.append(f"{caller}: closed {exc.rcvd.code if exc.rcvd else None}, expected open")
        finally:
            await client.close()
    assert not wrong, f"{socket}:\n" + "\n".join(wrong)


# What a message type does on a socket for a caller allowed on it: the reply type it gets
# ("ack", "sos_ack", "incident") or the error code.
MESSAGE_TYPES = [
    "location",
    "batch",
    "sos",
    "sos_cancel",
    "check_ok",
    "ack",
    "resolve",
    "ack_alert",
]

MESSAGE_MATRIX: dict[tuple[str, str], dict[str, str]] = {
    ("technician", TECHNICIAN): {
        "location": "ack",
        "batch": "ack",
        "sos": "sos_ack",
        "sos_cancel": "sos_ack",
        "check_ok": "error:not_found",  # allowed; there is no open check to answer
        "ack": "error:unknown_type",
        "resolve": "error:unknown_type",
        "ack_alert": "error:unknown_type",
    },
    ("booking", CUSTOMER): {
        "location": "error:unknown_type",
        "batch": "error:unknown_type",
        "sos": "sos_ack",
        "sos_cancel": "sos_ack",
        "check_ok": "error:unknown_type",
        "ack": "error:unknown_type",
        "resolve": "error:unknown_type",
        "ack_alert": "error:unknown_type",
    },
    ("booking", OPERATOR): {
        "location": "error:unknown_type",
        "batch": "error:unknown_type",
        "sos": "error:forbidden",  # operators watch a booking; its customer raises SOS
        "sos_cancel": "error:forbidden",
        "check_ok": "error:unknown_type",
        "ack": "error:unknown_type",
        "resolve": "error:unknown_type",
        "ack_alert": "error:unknown_type",
    },
    ("ops", OPERATOR): {
        "location": "error:unknown_type",
        "batch": "error:unknown_type",
        "sos": "error:unknown_type",
        "sos_cancel": "error:unknown_type",
        "check_ok": "error:unknown_type",
        "ack": "incident",  # a real open incident: every console gets it acknowledged
        "resolve": "incident",
        "ack_alert": "error:not_found",
    },
}


async def _open_incident(world: World) -> str:
    """An incident of its own, raised by the customer over HTTP, for the operator to act on."""
    token = world.tokens[OTHER_CUSTOMER]
    async with httpx.AsyncClient(base_url=world.hub.http, timeout=10) as http:
        answer = await http.post(
            "/v1/sos",
            json={"id": str(uuid.uuid4()), "t": time.time()},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 201, answer.text
        return answer.json()["incident"]


def _frames(seq: itertools.count, sos_id: str, incident: str) -> dict[str, dict[str, Any]]:
    def point() -> dict[str, Any]:
        return {"seq": next(seq), "t": time.time(), "lat": 52.51, "lon": 13.40}

    return {
        "location": {"type": "location", **point()},
        "batch": {"type": "batch", "points": [point(), point()]},
        "sos": {"type": "sos", "id": sos_id, "t": time.time()},
        "sos_cancel": {"type": "sos_cancel", "id": sos_id},
        "check_ok": {"type": "check_ok", "id": "chk-none"},
        "ack": {"type": "ack", "incident": incident},
        "resolve": {"type": "resolve", "incident": incident, "outcome": "false_alarm"},
        "ack_alert": {"type": "ack_alert", "alert": "al-none"},
    }


REPLIES = {"ack", "sos_ack", "incident", "error"}


async def _reply(client: Any, wanted: str) -> str:
    """The first reply that answers a message (skipping snapshots, positions, fleet...)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = await receive_json(client, deadline - time.monotonic())
        kind = message["type"]
        if kind == "ack" and wanted == "ack" and message.get("seq", -1) < 1:
            continue  # the resume ack sent on connect
        if kind in REPLIES and not (kind == "ack" and wanted != "ack"):
            return f"error:{message['code']}" if kind == "error" else kind
    raise TimeoutError(f"no reply within 5 s (wanted {wanted})")


@pytest.mark.parametrize(("socket", "caller"), list(MESSAGE_MATRIX), ids=lambda v: str(v))
async def test_each_message_type_is_allowed_or_refused_with_its_code(
    world: World, socket: str, caller: str
) -> None:
    path, _, _ = SOCKETS[socket]
    # Raised before the console connects: it is in the snapshot, and its own broadcast
    # cannot be mistaken for the reply to a message below.
    incident = await _open_incident(world) if socket == "ops" else "inc-none"
    client = await world.hub.connect(path, world.tokens[caller])
    await receive_json(client)  # ack (technician) or snapshot
    frames = _frames(itertools.count(int(time.time() * 1000)), str(uuid.uuid4()), incident)
    wrong = []
    try:
        for kind in MESSAGE_TYPES:
            expected = MESSAGE_MATRIX[(socket, caller)][kind]
            await client.send(json.dumps(frames[kind]))
            got = await _reply(client, expected)
            if got != expected:
                wrong.append(f"{kind}: expected {expected}, got {got}")
    finally:
        await client.close()
    assert not wrong, f"{socket} as {caller}:\n" + "\n".join(wrong)
