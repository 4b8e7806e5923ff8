"""Redis goes away for a few seconds under load (issue 5, item 5).

Two hubs share a private Redis (``tests/redis_server.py``) that the test stops and starts.
While it is away the hubs say not-ready, keep every socket open and refuse an SOS with
``sos_not_stored`` (the client retries; nothing is acknowledged unstored); afterwards they
are ready again, store every buffered fix exactly once and deliver between hubs again, and
the retried SOS becomes one incident.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.conftest import RunningHub, make_settings, receive_until
from tests.redis_server import PrivateRedis

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    await server.start()
    yield server
    await server.stop()


async def ready(hub: RunningHub) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=hub.http, timeout=5) as http:
        response = await http.get("/readyz")
    return response.status_code, response.json()


async def wait_ready(hub: RunningHub, status: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        code, body = await ready(hub)
        if code == status:
            return body
        assert time.monotonic() < deadline, f"readyz still {code}: {body}"
        await asyncio.sleep(0.1)


class Streamer:
    """A technician sending 20 fixes/s that resends from the last ack after an error, as
    the SDK's buffer does; records every ack."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.next_seq = 0
        self.acked = -1
        self.errors: list[str] = []
        self.other: list[dict[str, Any]] = []

    async def send(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            fix = {
                "type": "location",
                "seq": self.next_seq,
                "t": time.time(),
                "lat": 52.5 + self.next_seq * 1e-5,
                "lon": 13.4,
                "acc": 5.0,
            }
            await self.socket.send(json.dumps(fix))
            self.next_seq += 1
            await asyncio.sleep(0.05)

    async def read(self) -> None:
        async for raw in self.socket:
            message = json.loads(raw)
            if message["type"] == "ack":
                self.acked = max(self.acked, message["seq"])
            elif message["type"] == "error":
                self.errors.append(message["code"])
            else:
                self.other.append(message)


async def retry_sos_until_acked(tech: Streamer, client_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not [m for m in tech.other if m["type"] == "sos_ack"]:
        refusals = tech.errors.count("sos_not_stored")
        await tech.socket.send(json.dumps({"type": "sos", "id": client_id, "t": time.time()}))
        while not [m for m in tech.other if m["type"] == "sos_ack"]:
            assert time.monotonic() < deadline, (tech.errors, tech.other)
            if tech.errors.count("sos_not_stored") > refusals:
                break  # refused again: resend
            await asyncio.sleep(0.05)


async def test_hubs_survive_a_redis_outage_and_refuse_sos_meanwhile(
    tmp_path: Path, private_redis: PrivateRedis
):
    backend = {"backend": "redis", "redis_url": private_redis.url, "redis_prefix": "outage"}
    hub_a = RunningHub(make_settings(tmp_path / "a", hub_id="hub-a", **backend))
    hub_b = RunningHub(make_settings(tmp_path / "b", hub_id="hub-b", **backend))
    await hub_a.start()
    await hub_b.start()
    try:
        await hub_b.create_booking(id="b-out", technician_id="tech-o")
        assert (await hub_b.post("/v1/bookings/b-out/en_route")).status_code == 200
        customer = await hub_b.connect(
            "/v1/ws/bookings/b-out", await hub_b.token("customer", "cust-1", "b-out")
        )
        await receive_until(customer, "snapshot")
        tech_token = await hub_a.token("technician", "tech-o")
        tech_socket = await hub_a.connect("/v1/ws/technician", tech_token)
        await receive_until(tech_socket, "ack")
        tech = Streamer(tech_socket)
        reader = asyncio.create_task(tech.read())
        await tech.send(1.0)
        assert (await ready(hub_a))[0] == 200

        await private_redis.stop()
        outage_started = time.monotonic()
        streaming = asyncio.create_task(tech.send(3.0))
        for hub in (hub_a, hub_b):
            body = await wait_ready(hub, 503, timeout=5)
            assert body["checks"]["hub"] is True  # up, but its backend is not
            assert not (body["checks"]["store"] and body["checks"]["bus"])
        # An SOS now is refused with a retryable error, on the socket and over HTTP.
        await tech_socket.send(json.dumps({"type": "sos", "id": "sos-out", "t": time.time()}))
        async with hub_a.client(tech_token) as http:
            response = await http.post("/v1/sos", json={"id": "sos-out", "t": time.time()})
        assert response.status_code == 503
        assert response.json()["code"] == "sos_not_stored"
        await streaming
        acked_during_outage = tech.acked
        await asyncio.sleep(0.3)
        assert "sos_not_stored" in tech.errors
        assert not [m for m in tech.other if m["type"] == "sos_ack"]
        assert time.monotonic() - outage_started > 3

        await private_redis.start()
        for hub in (hub_a, hub_b):
            await wait_ready(hub, 200, timeout=20)
        # The sockets lived through it.
        assert tech_socket.state.name == "OPEN" and customer.state.name == "OPEN"
        # The client retries the SOS with the same id, as the SDK does (again on each
        # sos_not_stored, until acknowledged): one incident.
        await retry_sos_until_acked(tech, "sos-out", timeout=10)
        await tech.send(1.0)
        deadline = time.monotonic() + 15
        while tech.acked < tech.next_seq - 1:
            assert time.monotonic() < deadline, (tech.acked, tech.next_seq)
            await asyncio.sleep(0.1)
        assert tech.acked > acked_during_outage
        sos_acks = [m for m in tech.other if m["type"] == "sos_ack"]
        assert len(sos_acks) == 1, (tech.errors, tech.other)
        async with hub_b.client(await hub_b.token("operator", "op-1")) as http:
            incidents = (await http.get("/v1/incidents")).json()["incidents"]
            track = (await http.get("/v1/technicians/tech-o/track")).json()
        assert [i["client_id"] for i in incidents] == ["sos-out"]
        # Every fix stored once, none missing: the ones sent while Redis was away waited,
        # unacknowledged, in the hub's history queue, and were written when it came back.
        assert track["properties"]["seqs"] == list(range(tech.next_seq))
        # Hub A's positions reach the customer on hub B again (the bus reconnected).
        position = await receive_until(customer, "position", timeout=10)
        assert position["technician_id"] == "tech-o"
        reader.cancel()
    finally:
        await hub_a.stop()
        await hub_b.stop()
