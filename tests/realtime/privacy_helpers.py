"""Shared by the privacy tests: a hub on either backend, and small HTTP/socket helpers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from realtime.backends.redis import delete_all
from tests.conftest import TEST_REDIS_URL, RunningHub, receive_json, receive_until

DAY = 86400.0


@pytest.fixture(params=["embedded", "redis"])
async def backend_hub(
    request: pytest.FixtureRequest, hub_factory: Callable[..., Any]
) -> AsyncIterator[Callable[..., Any]]:
    """``await backend_hub(**settings)``: a hub on the embedded backend, then on Redis (a key
    prefix of its own, deleted afterwards)."""
    prefixes: list[str] = []

    async def make(**overrides: Any) -> RunningHub:
        if request.param == "redis":
            prefix = f"doorstep-test-privacy-{uuid.uuid4().hex[:10]}"
            prefixes.append(prefix)
            overrides |= {"backend": "redis", "redis_url": TEST_REDIS_URL, "redis_prefix": prefix}
        else:
            overrides |= {"backend": "embedded"}
        return await hub_factory(**overrides)

    yield make
    for prefix in prefixes:
        await delete_all(TEST_REDIS_URL, prefix)


async def technician(hub: RunningHub, sub: str):
    client = await hub.connect("/v1/ws/technician", await hub.token("technician", sub))
    await receive_until(client, "ack")
    return client


async def send_fixes(client, seqs: range, t: Callable[[int], float]) -> None:
    """One location frame per seq at time ``t(seq)``; waits for the ack of the last one."""
    for seq in seqs:
        frame = {
            "type": "location",
            "seq": seq,
            "t": t(seq),
            "lat": 52.5 + seq * 1e-4,
            "lon": 13.4,
            "acc": 5.0,
        }
        await client.send(json.dumps(frame))
    while True:
        message = await receive_json(client)
        assert message["type"] != "error", message
        if message["type"] == "ack" and message["seq"] >= seqs[-1]:
            return


async def raise_sos(client, sos_id: str, **fields: Any) -> str:
    await client.send(json.dumps({"type": "sos", "id": sos_id, "t": time.time(), **fields}))
    return (await receive_until(client, "sos_ack"))["incident"]


async def closed_booking(hub: RunningHub, booking_id: str, **body: Any) -> dict[str, Any]:
    await hub.create_booking(id=booking_id, **body)
    response = await hub.post(f"/v1/bookings/{booking_id}/cancel")
    assert response.status_code == 200, response.text
    return response.json()


async def get_json(hub: RunningHub, token: str | None, path: str, **params: Any) -> Any:
    async with hub.client(token) as http:
        response = await http.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def track_seqs(hub: RunningHub, token: str, technician_id: str, **params: float) -> list:
    feature = await get_json(hub, token, f"/v1/technicians/{technician_id}/track", **params)
    return feature["properties"]["seqs"]
