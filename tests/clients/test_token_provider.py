"""The SDK past its token's end (issue 11, item 4): a token provider, a real hub.

Tokens here live two seconds (signed by hand with the hub's key, since ``POST /v1/tokens``
mints one minute at least), so the hub closes each socket 4401 "token expired" several
times during a test; the client gets a fresh token from its provider and carries on.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from clients import AuthError, Backoff, CustomerClient, OperatorClient, TechnicianClient
from tests.conftest import RunningHub, hand_made_token

pytestmark = pytest.mark.asyncio

HOME = (52.52, 13.405)


def quick() -> Backoff:
    return Backoff(base_s=0.05, cap_s=0.3)


def short_token(identity: dict[str, Any], life_s: float = 2.0) -> str:
    now = time.time()
    return hand_made_token({**identity, "iat": int(now), "exp": int(now + life_s)})


async def stored_seqs(hub: RunningHub, technician_id: str) -> list[int]:
    async with hub.client(await hub.token("operator", "op-1")) as http:
        response = await http.get(f"/v1/technicians/{technician_id}/track")
        response.raise_for_status()
        return response.json()["properties"]["seqs"]


async def test_a_technician_streams_through_token_expiries_without_losing_a_fix(hub):
    identity = {"role": "technician", "sub": "t-short"}
    calls = 0

    def provider() -> str:  # a sync provider
        nonlocal calls
        calls += 1
        return short_token(identity)

    sent: list[int] = []
    tech = TechnicianClient(
        hub.http, short_token(identity), backoff=quick(), token_provider=provider
    )
    async with tech:
        await tech.wait_connected(5)
        t0 = time.time() - 60
        deadline = time.monotonic() + 5.5  # two expiries at least
        i = 0
        while time.monotonic() < deadline:
            sent.append(tech.send_fix(t0 + i * 0.01, HOME[0] + i * 1e-6, HOME[1], acc=8))
            i += 1
            await asyncio.sleep(0.02)
        assert await tech.flush(timeout=10), tech.stats
        assert tech.failure is None
        assert tech.socket.connections >= 3 and calls >= 2
        assert tech.stats.dropped == 0 and tech.stats.rejected == 0
        # Every close was for the token, none an auth failure that stopped the client.
        assert tech.socket.last_close == (4401, "token expired")
    assert await stored_seqs(hub, "t-short") == sent


async def test_customer_and_operator_reconnect_with_an_async_provider(hub):
    await hub.create_booking(id="b-short", customer_id="c-short", technician_id="t-x")
    identities = {
        "customer": {"role": "customer", "sub": "c-short", "booking": "b-short"},
        "operator": {"role": "operator", "sub": "op-short"},
    }
    asked: dict[str, int] = {"customer": 0, "operator": 0}

    def provider_for(name: str) -> Any:
        async def provider() -> str:
            asked[name] += 1
            await asyncio.sleep(0.01)  # the app's call to its backend
            return short_token(identities[name])

        return provider

    customer = CustomerClient(
        hub.http,
        "",  # no first token: the provider gives every one
        "b-short",
        backoff=quick(),
        token_provider=provider_for("customer"),
    )
    operator = OperatorClient(
        hub.http, "", backoff=quick(), token_provider=provider_for("operator")
    )
    async with customer, operator:
        await asyncio.sleep(4.5)  # two token lifetimes
        for client, name in ((customer, "customer"), (operator, "operator")):
            assert client.failure is None, name
            assert client.socket.connections >= 2, name
            assert asked[name] >= 2, name
            await client.wait_connected(5)


async def test_without_a_provider_an_expired_token_stops_the_client(hub):
    tech = TechnicianClient(
        hub.http, short_token({"role": "technician", "sub": "t-once"}, 1.5), backoff=quick()
    )
    await tech.start()
    with pytest.raises(AuthError, match="token expired"):
        await asyncio.wait_for(tech.wait_closed(), 6)
    assert tech.socket.connections == 1
    await tech.close()


async def test_a_revoked_token_stops_the_client_even_with_a_provider(hub):
    async with hub.client() as http:
        minted = (
            await http.post("/v1/tokens", json={"role": "operator", "sub": "op-r", "ttl_s": 600})
        ).json()
    asked = 0

    def provider() -> str:
        nonlocal asked
        asked += 1
        return minted["token"]

    ops = OperatorClient(hub.http, minted["token"], backoff=quick(), token_provider=provider)
    await ops.start()
    await ops.wait_connected(5)
    async with hub.client() as http:
        assert (await http.post("/v1/tokens/revoke", json={"jti": minted["jti"]})).is_success
    with pytest.raises(AuthError, match="token revoked"):
        await asyncio.wait_for(ops.wait_closed(), 5)
    assert asked == 0
    await ops.close()
