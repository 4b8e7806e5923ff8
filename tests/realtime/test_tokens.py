"""Tokens that end (issue 11, item 4), over real hubs with real clients.

An open socket is closed 4401 "token expired" when its token's ``exp`` passes and 4401
"token revoked" when it is revoked (by jti or by subject); revocations survive a restart;
``POST /v1/tokens/refresh`` hands a fresh token to the holder of a valid one, never to a
revoked one; ``DOORSTEP_SECRET`` rotates (several keys, picked by ``kid``); ``iss``/``aud``
are checked; the platform role is never a token.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime.auth import key_id
from realtime.backends.redis import delete_all
from realtime.settings import SettingsError, load_settings
from tests.conftest import (
    PLATFORM_KEY,
    SECRET,
    TEST_REDIS_URL,
    RunningHub,
    hand_made_token,
    receive_json,
    receive_until,
)
from tests.hub_process import HubProcess

pytestmark = pytest.mark.asyncio

OLD_KEY = "old-key-0123456789-0123456789-0123456789"
NEW_KEY = "new-key-0123456789-0123456789-0123456789"

# One identity per socket, with the first message the socket sends when it accepts.
SOCKETS: dict[str, tuple[str, dict[str, Any], str]] = {
    "technician": ("/v1/ws/technician", {"role": "technician", "sub": "tech-1"}, "ack"),
    "booking": (
        "/v1/ws/bookings/b-x",
        {"role": "customer", "sub": "cust-x", "booking": "b-x"},
        "snapshot",
    ),
    "ops": ("/v1/ws/ops", {"role": "operator", "sub": "op-1"}, "snapshot"),
}


async def closed_with(client: Any, timeout: float = 5.0) -> tuple[int, str]:
    """Read until the hub closes the socket; its close code and reason."""
    with pytest.raises(ConnectionClosed) as caught:
        async with asyncio.timeout(timeout):
            while True:
                await client.recv()
    assert caught.value.rcvd is not None, "dropped without a close frame"
    return caught.value.rcvd.code, caught.value.rcvd.reason


async def minted(hub: RunningHub, identity: dict[str, Any], ttl: int = 600) -> dict[str, Any]:
    async with hub.client() as http:
        response = await http.post("/v1/tokens", json={**identity, "ttl_s": ttl})
    assert response.status_code == 201, response.text
    return response.json()


async def revoke(hub: RunningHub, **body: str) -> Any:
    async with hub.client() as http:
        return await http.post("/v1/tokens/revoke", json=body)


async def opened(hub: RunningHub, socket: str, token: str) -> Any:
    path, _, first = SOCKETS[socket]
    client = await hub.connect(path, token)
    assert (await receive_json(client))["type"] == first
    return client


@pytest.fixture
async def served(hub: RunningHub) -> RunningHub:
    await hub.create_booking(id="b-x", customer_id="cust-x", technician_id="tech-1")
    return hub


# ------------------------------------------------------------------ expiry


async def test_every_open_socket_is_closed_when_its_token_expires(served):
    """Each socket lives past its token by at most the timer's latency, not for ever."""
    exp = int(time.time()) + 2
    clients = {
        name: await opened(served, name, hand_made_token({**identity, "exp": exp}))
        for name, (_, identity, _) in SOCKETS.items()
    }
    # A socket with a longer token on the same subject stays open.
    lasting = await opened(
        served, "technician", (await minted(served, SOCKETS["technician"][1]))["token"]
    )
    for name, client in clients.items():
        assert await closed_with(client, timeout=5) == (4401, "token expired"), name
        assert time.time() >= exp - 0.05, "closed before the token expired"
    fix = {"type": "location", "seq": 0, "t": time.time(), "lat": 52.5, "lon": 13.4}
    await lasting.send(json.dumps(fix))
    assert (await receive_until(lasting, "ack"))["seq"] == 0


# ------------------------------------------------------------------ refresh


@pytest.mark.parametrize("socket", list(SOCKETS))
async def test_refresh_gives_a_new_token_of_the_same_identity(served, socket):
    _, identity, _ = SOCKETS[socket]
    old = await minted(served, identity, ttl=120)
    async with served.client(old["token"]) as http:
        response = await http.post("/v1/tokens/refresh")
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["jti"] != old["jti"] and new["token"] != old["token"]
    assert (new["role"], new["sub"], new.get("booking")) == (
        identity["role"],
        identity["sub"],
        identity.get("booking"),
    )
    # The default ttl, not the old token's.
    assert abs(new["expires_at"] - (time.time() + served.settings.token_ttl_s)) < 5
    claims = jwt.decode(new["token"], options={"verify_signature": False})
    assert claims["jti"] == new["jti"] and claims.get("booking") == identity.get("booking")
    await opened(served, socket, new["token"])


@pytest.mark.parametrize(
    ("credential", "status"),
    [("platform key", 403), ("expired", 401), ("nothing", 401), ("platform JWT", 401)],
)
async def test_refresh_needs_a_valid_token_of_a_person(served, credential, status):
    token = {
        "platform key": PLATFORM_KEY,
        "expired": hand_made_token(
            {"role": "technician", "sub": "tech-1", "iat": 1000, "exp": 2000}
        ),
        "nothing": None,
        "platform JWT": hand_made_token({"role": "platform", "sub": "backend"}),
    }[credential]
    async with served.client(token) as http:
        response = await http.post("/v1/tokens/refresh")
    assert response.status_code == status, response.text
    assert response.json()["code"] == ("forbidden" if status == 403 else "unauthorized")


async def test_a_revoked_token_cannot_refresh_and_a_subject_revocation_ends_older_ones(served):
    first = await minted(served, SOCKETS["technician"][1])
    second = await minted(served, SOCKETS["technician"][1])
    assert (await revoke(served, jti=first["jti"])).status_code == 200
    async with served.client(first["token"]) as http:
        response = await http.post("/v1/tokens/refresh")
    assert response.status_code == 401 and response.json()["message"] == "token revoked"
    # Another token of the same subject still refreshes...
    async with served.client(second["token"]) as http:
        refreshed = (await http.post("/v1/tokens/refresh")).json()
    # ...until the subject is revoked: every token issued before that is refused.
    assert (await revoke(served, sub="tech-1")).status_code == 200
    for token in (second["token"], refreshed["token"]):
        async with served.client(token) as http:
            response = await http.post("/v1/tokens/refresh")
        assert response.status_code == 401, response.text
    # The platform mints again (the revocation is not a ban): tokens issued after it work,
    # even within the same second.
    fresh = await minted(served, SOCKETS["technician"][1])
    async with served.client(fresh["token"]) as http:
        assert (await http.post("/v1/tokens/refresh")).status_code == 201
    await opened(served, "technician", fresh["token"])


# ------------------------------------------------------------------ revocation


@pytest.mark.parametrize("socket", list(SOCKETS))
async def test_revoking_a_jti_closes_its_open_socket_and_only_that(served, socket):
    _, identity, _ = SOCKETS[socket]
    doomed = await minted(served, identity)
    other = await minted(served, identity)
    doomed_client = await opened(served, socket, doomed["token"])
    other_client = await opened(served, socket, other["token"])
    started = time.monotonic()
    response = await revoke(served, jti=doomed["jti"])
    assert response.status_code == 200, response.text
    assert response.json()["jti"] == doomed["jti"]
    assert await closed_with(doomed_client, timeout=2) == (4401, "token revoked")
    assert time.monotonic() - started < 2
    # The same subject's other token is untouched; the revoked one opens nothing any more.
    await other_client.ping()
    again = await served.connect(SOCKETS[socket][0], doomed["token"])
    assert await closed_with(again) == (4401, "token revoked")
    async with served.client(doomed["token"]) as http:
        response = await http.get("/v1/bookings/b-x")
    assert response.status_code == 401 and response.json()["message"] == "token revoked"


async def test_revoking_a_subject_closes_all_of_its_sockets(served):
    identity = SOCKETS["technician"][1]
    clients = [await opened(served, "technician", (await minted(served, identity))["token"])]
    clients.append(await opened(served, "technician", hand_made_token(identity)))
    watcher = await opened(served, "ops", (await minted(served, SOCKETS["ops"][1]))["token"])
    assert (await revoke(served, sub="tech-1")).status_code == 200
    for client in clients:
        assert await closed_with(client, timeout=2) == (4401, "token revoked")
    await watcher.ping()  # another subject: still open


async def test_revocations_survive_a_restart(served):
    by_jti = await minted(served, SOCKETS["ops"][1])
    by_sub = await minted(served, SOCKETS["technician"][1])
    await revoke(served, jti=by_jti["jti"])
    await revoke(served, sub="tech-1")
    await served.restart()
    for socket, token in (("ops", by_jti["token"]), ("technician", by_sub["token"])):
        client = await served.connect(SOCKETS[socket][0], token)
        assert await closed_with(client) == (4401, "token revoked")


@pytest.mark.parametrize(
    ("credential", "body", "status", "code"),
    [
        ("operator", {"jti": "x"}, 401, "unauthorized"),
        (None, {"jti": "x"}, 401, "unauthorized"),
        (PLATFORM_KEY, {}, 422, "invalid_field"),
        (PLATFORM_KEY, {"jti": "x", "sub": "y"}, 422, "invalid_field"),
        (PLATFORM_KEY, {"jti": ""}, 422, "invalid_field"),
        (PLATFORM_KEY, {"who": "x"}, 422, "invalid_field"),
    ],
    ids=["operator JWT", "nothing", "empty", "both", "empty jti", "unknown field"],
)
async def test_revoke_is_for_the_platform_key_with_one_of_jti_or_sub(
    served, credential, body, status, code
):
    if credential == "operator":
        credential = (await minted(served, SOCKETS["ops"][1]))["token"]
    async with served.client(credential) as http:
        response = await http.post("/v1/tokens/revoke", json=body)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


# ------------------------------------------------------------------ keys, iss, aud, roles


async def test_key_rotation_accepts_every_listed_key_and_signs_with_the_first(hub_factory):
    hub = await hub_factory(secret=f"{NEW_KEY},{OLD_KEY}")
    identity = {"role": "operator", "sub": "op-1"}
    token = (await minted(hub, identity))["token"]
    assert jwt.get_unverified_header(token)["kid"] == key_id(NEW_KEY)
    jwt.decode(token, NEW_KEY, algorithms=["HS256"], audience="doorstep")
    accepted = [
        token,
        hand_made_token(identity, OLD_KEY),  # signed before the rotation
        hand_made_token(identity, OLD_KEY, kid=False),  # before kids existed: every key tried
    ]
    for good in accepted:
        await opened(hub, "ops", good)
    forged = jwt.encode(
        jwt.decode(token, options={"verify_signature": False}),
        SECRET,
        algorithm="HS256",
        headers={"kid": key_id(OLD_KEY)},
    )
    refused = {
        "a retired key": hand_made_token(identity, SECRET),
        "a retired key, no kid": hand_made_token(identity, SECRET, kid=False),
        "the old key's kid, signed with another": forged,
    }
    for case, bad in refused.items():
        client = await hub.connect("/v1/ws/ops", bad)
        code, reason = await closed_with(client)
        assert code == 4401 and "signature" in reason, case


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "someone-else"}, "issuer"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": None}, "'iss'"),
        ({"aud": None}, "'aud'"),
        ({"jti": None}, "'jti'"),
        ({"iat": None}, "'iat'"),
    ],
)
async def test_issuer_audience_jti_and_iat_are_required_and_checked(hub, claims, reason):
    client = await hub.connect(
        "/v1/ws/ops", hand_made_token({"role": "operator", "sub": "op-1", **claims})
    )
    code, text = await closed_with(client)
    assert code == 4401 and reason in text, text


async def test_the_platform_role_cannot_be_minted(hub):
    async with hub.client() as http:
        response = await http.post("/v1/tokens", json={"role": "platform", "sub": "backend"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_field"


@pytest.mark.parametrize("path", ["/v1/bookings", "/v1/tokens", "/v1/tokens/revoke"])
async def test_a_platform_jwt_is_never_the_platform(hub, path):
    """Even one signed with the hub's own key: only the API key is the platform."""
    token = hand_made_token({"role": "platform", "sub": "platform"})
    async with hub.client(token) as http:
        response = await http.post(path, json={"role": "operator", "sub": "x"})
    assert response.status_code == 401, response.text


async def test_settings_refuse_short_keys_without_printing_them(monkeypatch, tmp_path):
    monkeypatch.setenv("DOORSTEP_DATA_DIR", str(tmp_path))
    for secret in ("x", f"{NEW_KEY},short-but-secret", f"{NEW_KEY},"):
        monkeypatch.setenv("DOORSTEP_SECRET", secret)
        with pytest.raises(SettingsError) as caught:
            load_settings()
        message = str(caught.value)
        assert message.startswith("invalid setting DOORSTEP_SECRET:"), message
        assert "\n" not in message and "32 bytes" in message
        assert "short-but-secret" not in message and NEW_KEY not in message
    monkeypatch.setenv("DOORSTEP_SECRET", f"{NEW_KEY}, {OLD_KEY}")
    assert load_settings().secret is not None


# ------------------------------------------------------------------ several hubs


async def test_a_revocation_on_one_hub_closes_sockets_on_every_hub(tmp_path):
    """Two ``doorstep serve`` processes on one Redis: revoke on A, B closes its sockets
    within 2 s, and B refuses the token from then on (it checks from memory)."""
    prefix = f"doorstep-test-revoke-{uuid.uuid4().hex[:10]}"
    hubs = [HubProcess(name, tmp_path / name, TEST_REDIS_URL, prefix) for name in ("a", "b")]
    try:
        await asyncio.gather(*(hub.start() for hub in hubs))
        hub_a, hub_b = hubs
        async with hub_a.client() as http:
            body = {"role": "operator", "sub": "op-9", "ttl_s": 600}
            by_jti = (await http.post("/v1/tokens", json=body)).json()
            by_sub = (await http.post("/v1/tokens", json={**body, "sub": "op-10"})).json()
            keep = (await http.post("/v1/tokens", json={**body, "sub": "op-11"})).json()
        sockets = {}
        for name, token in (("jti", by_jti), ("sub", by_sub), ("keep", keep)):
            sockets[name] = await connect(f"{hub_b.ws}/v1/ws/ops?token={token['token']}")
            assert (await receive_json(sockets[name]))["type"] == "snapshot"
        started = time.monotonic()
        async with hub_a.client() as http:
            assert (await http.post("/v1/tokens/revoke", json={"jti": by_jti["jti"]})).is_success
            assert (await http.post("/v1/tokens/revoke", json={"sub": "op-10"})).is_success
        for name in ("jti", "sub"):
            assert await closed_with(sockets[name], timeout=2) == (4401, "token revoked"), name
        assert time.monotonic() - started < 2
        await sockets["keep"].ping()
        for token in (by_jti, by_sub):
            again = await connect(f"{hub_b.ws}/v1/ws/ops?token={token['token']}")
            assert await closed_with(again) == (4401, "token revoked")
        for client in sockets.values():
            await client.close()
    finally:
        await asyncio.gather(*(hub.stop() for hub in hubs))
        await delete_all(TEST_REDIS_URL, prefix)
