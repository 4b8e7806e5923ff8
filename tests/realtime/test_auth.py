"""Authentication and scopes, against a real hub (uvicorn) with real WebSocket and HTTP clients.

The contract (docs/protocol.md): a bad or missing token closes the socket with 4401, a good
token for the wrong socket or the wrong booking with 4403, a booking that does not exist with
4404; every close carries a reason a client can show. Over HTTP the same failures are
401 ``unauthorized``, 403 ``forbidden`` and 404 ``not_found`` JSON bodies.

Nothing here needs a fresh database, so the whole module shares one hub (a hub start and stop
costs more than most of these tests): it holds booking ``b-x`` (customer ``cust-x``,
technician ``tech-1``) and ``b-y`` (customer ``cust-y``, unassigned), which no test changes;
tests that change bookings create their own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
import pytest_asyncio
from websockets.exceptions import ConnectionClosed

from realtime.auth import Role, mint
from tests.conftest import PLATFORM_KEY, SECRET, RunningHub, make_settings, receive_json

pytestmark = pytest.mark.asyncio(loop_scope="module")

OTHER_SECRET = "another-secret-not-the-hubs-0123456789abcdef"

# One good identity per socket; the bad-token table below spoils exactly one thing about it.
SOCKETS: dict[str, tuple[str, dict[str, Any]]] = {
    "technician": ("/v1/ws/technician", {"role": "technician", "sub": "tech-1"}),
    "booking": ("/v1/ws/bookings/b-x", {"role": "customer", "sub": "cust-x", "booking": "b-x"}),
    "ops": ("/v1/ws/ops", {"role": "operator", "sub": "op-1"}),
}

# What each socket sends first when it accepts the connection.
FIRST_MESSAGE = {
    "/v1/ws/technician": "ack",
    "/v1/ws/bookings/b-x": "snapshot",
    "/v1/ws/bookings/b-y": "snapshot",
    "/v1/ws/ops": "snapshot",
}


# ------------------------------------------------------------------ token builders


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims(identity: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Full, valid claims for an identity; a change to ``None`` removes the claim."""
    now = int(time.time())
    body = {
        **identity,
        "iat": now,
        "exp": now + 600,
        "iss": "doorstep",
        "aud": "doorstep",
        "jti": uuid.uuid4().hex,
        **changes,
    }
    return {k: v for k, v in body.items() if v is not None}


def good(identity: dict[str, Any]) -> str:
    return jwt.encode(claims(identity), SECRET, algorithm="HS256")


def hs256_by_hand(header: dict[str, Any], payload: bytes, secret: str = SECRET) -> str:
    """A correctly HS256-signed token around any payload bytes (even ones that are not JSON)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def edited_payload(identity: dict[str, Any]) -> str:
    """Signed for someone else, then the payload rewritten to claim this identity."""
    header, payload, signature = jwt.encode(
        claims(identity, sub="mallory"), SECRET, algorithm="HS256"
    ).split(".")
    body = json.loads(unb64(payload))
    body["sub"] = identity["sub"]
    return ".".join([header, b64(json.dumps(body).encode()), signature])


def edited_header_alg_none(identity: dict[str, Any]) -> str:
    """A valid token whose header was rewritten to ``alg: none`` (signature kept)."""
    _, payload, signature = good(identity).split(".")
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return ".".join([header, payload, signature])


def expired(identity: dict[str, Any]) -> str:
    token, _ = mint(
        SECRET,
        role=Role(identity["role"]),
        sub=identity["sub"],
        booking=identity.get("booking"),
        now=time.time() - 10_000,
        ttl_s=60,
    )
    return token


TokenBuilder = Callable[[dict[str, Any]], str | None]

# (case, token builder, a fragment the close reason must contain)
BAD_TOKENS: list[tuple[str, TokenBuilder, str]] = [
    ("missing token", lambda i: None, "missing token"),
    ("empty token", lambda i: "", "missing token"),
    ("expired", expired, "expired"),
    (
        "signed with another secret",
        lambda i: jwt.encode(claims(i), OTHER_SECRET, algorithm="HS256"),
        "signature",
    ),
    ("payload edited after signing", edited_payload, "signature"),
    ("signature stripped", lambda i: good(i).rsplit(".", 1)[0] + ".", "signature"),
    ("unsigned, alg none", lambda i: jwt.encode(claims(i), key=None, algorithm="none"), "alg"),
    ("header edited to alg none", edited_header_alg_none, "alg"),
    ("HS512 instead of HS256", lambda i: jwt.encode(claims(i), SECRET * 2, "HS512"), "alg"),
    ("garbage string", lambda i: "not-a-jwt", "invalid"),
    ("three garbage segments", lambda i: "aaaa.bbbb.cccc", "invalid"),
    (
        "signed payload is not JSON",
        lambda i: hs256_by_hand({"alg": "HS256", "typ": "JWT"}, b"hello"),
        "invalid",
    ),
    (
        "signed payload is a JSON array",
        lambda i: hs256_by_hand({"alg": "HS256", "typ": "JWT"}, b"[1, 2]"),
        "invalid",
    ),
    (
        "unknown role",
        lambda i: jwt.encode(claims(i, role="superuser"), SECRET, algorithm="HS256"),
        "unknown role",
    ),
    (
        "role is not a string",
        lambda i: jwt.encode(claims(i, role=["operator"]), SECRET, algorithm="HS256"),
        "role",
    ),
    ("missing exp", lambda i: jwt.encode(claims(i, exp=None), SECRET, "HS256"), "'exp'"),
    ("missing sub", lambda i: jwt.encode(claims(i, sub=None), SECRET, "HS256"), "'sub'"),
    ("missing role", lambda i: jwt.encode(claims(i, role=None), SECRET, "HS256"), "'role'"),
    ("empty sub", lambda i: jwt.encode(claims(i, sub=""), SECRET, "HS256"), "sub"),
    ("sub is not a string", lambda i: jwt.encode(claims(i, sub=42), SECRET, "HS256"), "sub"),
    (
        "booking is not a string",
        lambda i: jwt.encode(claims(i, booking=["b-x"]), SECRET, "HS256"),
        "booking",
    ),
    ("exp is not a number", lambda i: jwt.encode(claims(i, exp="soon"), SECRET, "HS256"), "exp"),
    (
        "not valid yet (nbf in an hour)",
        lambda i: jwt.encode(claims(i, nbf=int(time.time()) + 3600), SECRET, "HS256"),
        "not yet valid",
    ),
]


# ------------------------------------------------------------------ helpers


async def open_socket(hub: Any, path: str, token: str | None, carrier: str = "query") -> Any:
    if carrier == "header":
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await hub.connect(path, additional_headers=headers)
    if token == "":
        return await hub.connect(path + "?token=")
    return await hub.connect(path, token)


async def close_of(client: Any) -> tuple[int, str]:
    """The code and reason the hub closed this socket with (it must close it, not talk)."""
    with pytest.raises(ConnectionClosed) as caught:
        message = await asyncio.wait_for(client.recv(), 5)
        pytest.fail(f"the hub sent {message!r} instead of closing")
    assert caught.value.rcvd is not None, "the hub dropped the connection without a close frame"
    return caught.value.rcvd.code, caught.value.rcvd.reason


async def assert_accepted(client: Any, path: str) -> dict[str, Any]:
    message = await receive_json(client)
    assert message["type"] == FIRST_MESSAGE[path], message
    return message


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningHub]:
    running = RunningHub(make_settings(tmp_path_factory.mktemp("auth")))
    await running.start()
    await running.create_booking(id="b-x", customer_id="cust-x", technician_id="tech-1")
    await running.create_booking(id="b-y", customer_id="cust-y")
    yield running
    await running.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def hub(served: RunningHub) -> AsyncIterator[RunningHub]:
    """The shared hub; the sockets a test opened are closed after it."""
    yield served
    clients, served.clients = served.clients, []
    for client in clients:
        await client.close()


def jwt_for(role: str, sub: str, booking: str | None = None) -> str:
    return jwt.encode(
        claims({"role": role, "sub": sub, **({"booking": booking} if booking else {})}),
        SECRET,
        algorithm="HS256",
    )


# ------------------------------------------------------------------ WebSocket: 4401


@pytest.mark.parametrize("socket", list(SOCKETS))
@pytest.mark.parametrize(
    ("case", "build", "reason"), BAD_TOKENS, ids=[case for case, _, _ in BAD_TOKENS]
)
async def test_bad_token_closes_4401_with_a_reason(hub, socket, case, build, reason):
    path, identity = SOCKETS[socket]
    client = await open_socket(hub, path, build(identity))
    code, text = await close_of(client)
    assert code == 4401, (code, text)
    assert reason.lower() in text.lower(), text


@pytest.mark.parametrize("socket", list(SOCKETS))
@pytest.mark.parametrize("carrier", ["query", "header"])
async def test_good_token_opens_the_socket_either_way_it_is_carried(hub, socket, carrier):
    path, identity = SOCKETS[socket]
    client = await open_socket(hub, path, good(identity), carrier)
    await assert_accepted(client, path)


@pytest.mark.parametrize("socket", list(SOCKETS))
async def test_bad_token_in_the_header_closes_4401_too(hub, socket):
    path, identity = SOCKETS[socket]
    client = await open_socket(hub, path, expired(identity), "header")
    assert await close_of(client) == (4401, "token expired")


async def test_customer_token_without_a_booking_claim_is_malformed(hub):
    token = jwt.encode(claims({"role": "customer", "sub": "cust-x"}), SECRET, algorithm="HS256")
    client = await hub.connect("/v1/ws/bookings/b-x", token)
    code, reason = await close_of(client)
    assert code == 4401 and "booking" in reason


async def test_a_long_hostile_role_still_gets_a_proper_close(hub):
    """Close reasons are capped at 123 bytes by the protocol; the hub must not echo unbounded."""
    token = jwt.encode(claims({"sub": "x", "role": "r" * 500}), SECRET, algorithm="HS256")
    client = await hub.connect("/v1/ws/technician", token)
    code, reason = await close_of(client)
    assert code == 4401 and "unknown role" in reason
    assert len(reason.encode()) <= 123


# ------------------------------------------------------------------ WebSocket: scopes


@pytest.mark.parametrize(
    ("role", "sub", "booking", "path", "expected"),
    [
        # Customers watch their own booking, nothing else.
        ("customer", "cust-x", "b-x", "/v1/ws/bookings/b-x", "open"),
        ("customer", "cust-x", "b-x", "/v1/ws/bookings/b-y", 4403),
        ("customer", "cust-x", "b-x", "/v1/ws/technician", 4403),
        ("customer", "cust-x", "b-x", "/v1/ws/ops", 4403),
        # Technicians stream; they do not watch bookings or the fleet.
        ("technician", "tech-1", None, "/v1/ws/technician", "open"),
        ("technician", "tech-1", None, "/v1/ws/ops", 4403),
        ("technician", "tech-1", None, "/v1/ws/bookings/b-x", 4403),
        # Operators watch any booking and the fleet, but do not stream as a technician.
        ("operator", "op-1", None, "/v1/ws/bookings/b-x", "open"),
        ("operator", "op-1", None, "/v1/ws/bookings/b-y", "open"),
        ("operator", "op-1", None, "/v1/ws/ops", "open"),
        ("operator", "op-1", None, "/v1/ws/technician", 4403),
        # A platform JWT is never accepted: only the API key is the platform.
        ("platform", "backend", None, "/v1/ws/ops", 4401),
        ("platform", "backend", None, "/v1/ws/technician", 4401),
        ("platform", "backend", None, "/v1/ws/bookings/b-x", 4401),
    ],
)
async def test_role_and_booking_scope(hub, role, sub, booking, path, expected):
    client = await hub.connect(path, jwt_for(role, sub, booking))
    if expected == "open":
        await assert_accepted(client, path)
        return
    code, reason = await close_of(client)
    assert code == expected, (code, reason)
    assert reason, "a 4403 close must say why"


async def test_customer_of_x_cannot_watch_y_and_is_told_why(hub):
    client = await hub.connect("/v1/ws/bookings/b-y", await hub.token("customer", "cust-x", "b-x"))
    assert await close_of(client) == (4403, "this token is for another booking")


async def test_customer_of_x_watches_x(hub):
    client = await hub.connect("/v1/ws/bookings/b-x", await hub.token("customer", "cust-x", "b-x"))
    snapshot = await assert_accepted(client, "/v1/ws/bookings/b-x")
    assert snapshot["booking"]["id"] == "b-x"


@pytest.mark.parametrize(
    ("role", "sub", "booking", "path", "expected"),
    [
        ("operator", "op-1", None, "/v1/ws/bookings/nope", 4404),
        ("customer", "cust-z", "nope", "/v1/ws/bookings/nope", 4404),
        # Scope is checked before existence: another booking's id is not an oracle.
        ("customer", "cust-x", "b-x", "/v1/ws/bookings/nope", 4403),
    ],
)
async def test_booking_that_does_not_exist(hub, role, sub, booking, path, expected):
    client = await hub.connect(path, jwt_for(role, sub, booking))
    code, reason = await close_of(client)
    assert code == expected
    assert reason


async def test_a_long_booking_id_that_does_not_exist_still_gets_4404(hub):
    booking_id = "n" * 300
    client = await hub.connect(f"/v1/ws/bookings/{booking_id}", jwt_for("operator", "op"))
    code, reason = await close_of(client)
    assert code == 4404 and "does not exist" in reason
    assert len(reason.encode()) <= 123


# ------------------------------------------------------------------ HTTP: tokens


@pytest.mark.parametrize(
    "credential",
    [None, "wrong-platform-key", PLATFORM_KEY + "x", "operator-jwt"],
    ids=["no key", "wrong key", "key with a suffix", "a JWT instead of the key"],
)
async def test_minting_tokens_needs_the_platform_key(hub, credential):
    if credential == "operator-jwt":
        credential = jwt_for("operator", "op-1")
    async with hub.client(credential) as http:
        response = await http.post("/v1/tokens", json={"role": "operator", "sub": "op-1"})
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "unauthorized" and body["message"]


@pytest.mark.parametrize(
    ("body", "path", "first"),
    [
        ({"role": "technician", "sub": "tech-1"}, "/v1/ws/technician", "ack"),
        ({"role": "operator", "sub": "op-1"}, "/v1/ws/ops", "snapshot"),
        (
            {"role": "customer", "sub": "cust-x", "booking": "b-x"},
            "/v1/ws/bookings/b-x",
            "snapshot",
        ),
    ],
)
async def test_minted_token_works(hub, body, path, first):
    async with hub.client() as http:
        response = await http.post("/v1/tokens", json={**body, "ttl_s": 600})
    assert response.status_code == 201, response.text
    minted = response.json()
    assert minted["role"] == body["role"] and minted["sub"] == body["sub"]
    assert minted["expires_at"] > time.time()
    client = await hub.connect(path, minted["token"])
    assert (await receive_json(client))["type"] == first


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"role": "customer", "sub": "cust-x"}, "invalid_field"),
        ({"role": "superuser", "sub": "x"}, "invalid_field"),
        ({"role": "technician"}, "invalid_field"),
        ({"role": "technician", "sub": ""}, "invalid_field"),
        ({"role": "technician", "sub": "has space"}, "invalid_field"),
        ({"role": "technician", "sub": "t", "admin": True}, "invalid_field"),
        ({"role": "technician", "sub": "t", "ttl_s": 5}, "out_of_range"),
        ({"role": "technician", "sub": "t", "ttl_s": 10**9}, "out_of_range"),
        ({"role": "technician", "sub": "t", "ttl_s": "long"}, "invalid_field"),
    ],
    ids=[
        "customer without booking",
        "unknown role",
        "no sub",
        "empty sub",
        "bad sub",
        "extra",
        "ttl too short",
        "ttl too long",
        "ttl not a number",
    ],
)
async def test_token_request_with_bad_fields_is_422(hub, body, code):
    async with hub.client() as http:
        response = await http.post("/v1/tokens", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code


# ------------------------------------------------------------------ HTTP: bookings


@pytest.mark.parametrize(
    ("credential", "status", "code"),
    [
        (None, 401, "unauthorized"),
        ("garbage", 401, "unauthorized"),
        ("expired-operator", 401, "unauthorized"),
        ("technician", 403, "forbidden"),
        ("customer", 403, "forbidden"),
        ("operator", 403, "forbidden"),  # operators manage bookings; only the platform creates
    ],
)
async def test_only_the_platform_creates_bookings(hub, credential, status, code):
    booking_id = f"b-refused-{credential}"
    tokens = {
        None: None,
        "garbage": "garbage",
        "expired-operator": expired({"role": "operator", "sub": "op-1"}),
        "technician": jwt_for("technician", "tech-1"),
        "customer": jwt_for("customer", "cust-1", "b-1"),
        "operator": jwt_for("operator", "op-1"),
    }
    async with hub.client(tokens[credential]) as http:
        response = await http.post(
            "/v1/bookings",
            json={
                "id": booking_id,
                "customer_id": "cust-1",
                "destination": {"lat": 52.5, "lon": 13.4},
            },
        )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    async with hub.client() as http:
        assert (await http.get(f"/v1/bookings/{booking_id}")).status_code == 404


@pytest.mark.parametrize(
    ("credential", "status", "sees_events"),
    [
        ("platform", 200, True),
        ("operator", 200, True),
        ("customer of b-x", 200, False),
        ("technician of b-x", 200, False),
        ("customer of b-y", 404, None),
        ("another technician", 404, None),
        ("platform JWT", 401, None),
    ],
)
async def test_reading_a_booking(hub, credential, status, sees_events):
    tokens = {
        "platform": PLATFORM_KEY,
        "operator": jwt_for("operator", "op-1"),
        "customer of b-x": jwt_for("customer", "cust-x", "b-x"),
        "technician of b-x": jwt_for("technician", "tech-1"),
        "customer of b-y": jwt_for("customer", "cust-y", "b-y"),
        "another technician": jwt_for("technician", "tech-2"),
        "platform JWT": jwt_for("platform", "backend"),
    }
    async with hub.client(tokens[credential]) as http:
        response = await http.get("/v1/bookings/b-x")
    assert response.status_code == status, response.text
    body = response.json()
    if status == 401:  # a platform-role JWT is not the platform (only the API key is)
        assert body["code"] == "unauthorized" and "API key" in body["message"]
        return
    if status == 404:
        # The same answer as for a booking that does not exist.
        assert body["code"] == "not_found"
        assert body["message"] == "booking b-x does not exist"
        return
    assert body["id"] == "b-x" and body["status"] == "assigned"
    assert ("events" in body) is sees_events
    if sees_events:
        assert [(e["event"], e["to_status"]) for e in body["events"]] == [
            ("create", "requested"),
            ("assign", "assigned"),
        ]
        assert {e["actor"] for e in body["events"]} == {"platform:platform"}


async def test_operator_sees_the_audit_trail_of_every_transition(hub):
    await hub.create_booking(id="b-audit", customer_id="cust-a")
    async with hub.client(jwt_for("operator", "op-7")) as http:
        response = await http.post("/v1/bookings/b-audit/assign", json={"technician_id": "tech-2"})
        assert response.status_code == 200, response.text
        response = await http.post("/v1/bookings/b-audit/en_route", json={"cause": "left depot"})
        assert response.status_code == 200, response.text
        body = (await http.get("/v1/bookings/b-audit")).json()
    assert body["status"] == "en_route"
    events = [
        (e["event"], e.get("from_status"), e["to_status"], e["actor"]) for e in body["events"]
    ]
    assert events == [
        ("create", None, "requested", "platform:platform"),
        ("assign", "requested", "assigned", "operator:op-7"),
        ("en_route", "assigned", "en_route", "operator:op-7"),
    ]
    assert body["events"][2]["cause"] == "left depot"


@pytest.mark.parametrize(
    ("credential", "status", "code"),
    [
        ("its technician", 403, "forbidden"),
        ("its customer", 403, "forbidden"),
        ("nobody", 401, "unauthorized"),
    ],
)
async def test_only_platform_and_operators_change_bookings(hub, credential, status, code):
    booking_id = f"b-change-{credential.replace(' ', '-')}"
    await hub.create_booking(id=booking_id, customer_id="cust-c", technician_id="tech-c")
    token = {
        "its technician": jwt_for("technician", "tech-c"),
        "its customer": jwt_for("customer", "cust-c", booking_id),
        "nobody": None,
    }[credential]
    async with hub.client(token) as http:
        response = await http.post(f"/v1/bookings/{booking_id}/cancel", json={})
    assert response.status_code == status
    assert response.json()["code"] == code
    async with hub.client() as http:
        body = (await http.get(f"/v1/bookings/{booking_id}")).json()
    assert body["status"] == "assigned"
    assert [e["event"] for e in body["events"]] == ["create", "assign"]
