"""Redis refuses writes (``maxmemory`` + ``noeviction``) and the hubs heal by themselves.

Issue 11, item 6: the bus writer used to die for good on any Redis error that was not a
connection error (an OOM reply to XADD, READONLY after a failover): ``/readyz`` stayed green
and the hub never published to the other hubs again. Now the writer's failure is counted
(``doorstep_task_restarts_total``), the hub answers 503 while it is down, and once Redis
accepts writes again the writer is back, the kept durable message crosses and so does
everything after it; no hub is restarted.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from realtime.backends.base import BusMessage
from realtime.channels import OPS_CHANNEL
from tests.conftest import RunningHub, make_settings, receive_until
from tests.redis_server import PrivateRedis

pytestmark = pytest.mark.asyncio

WRITER = "doorstep-redis-bus-writer"


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    await server.start()
    yield server
    await server.stop()


async def readyz(hub: RunningHub) -> tuple[int, dict]:
    async with httpx.AsyncClient(base_url=hub.http, timeout=5) as http:
        response = await http.get("/readyz")
    return response.status_code, response.json()


async def wait_ready(hub: RunningHub, status: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body = await readyz(hub)
        if code == status:
            return body
        assert time.monotonic() < deadline, f"readyz still {code}: {body}"
        await asyncio.sleep(0.1)


async def restarts(hub: RunningHub, task: str) -> float:
    async with httpx.AsyncClient(base_url=hub.http, timeout=5) as http:
        text = (await http.get("/metrics")).text
    found = re.search(rf'doorstep_task_restarts_total{{task="{task}"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


async def fill_memory(client: aioredis.Redis) -> None:
    """Make every write (``denyoom`` command) fail: used memory over ``maxmemory``."""
    await client.config_set("maxmemory-policy", "noeviction")
    for part in range(8):  # 8 MB in small writes: a big one inflates the query buffer
        await client.hset("filler", str(part), b"x" * 1_000_000)
    await asyncio.sleep(0.5)  # let Redis free its client buffers before measuring
    used = (await client.info("memory"))["used_memory"]
    await client.config_set("maxmemory", str(used - 3_000_000))
    with pytest.raises(aioredis.ResponseError, match="maxmemory"):
        await client.set("probe", "1")


async def test_a_hub_whose_redis_refuses_writes_is_not_ready_then_heals(
    tmp_path: Path, private_redis: PrivateRedis
) -> None:
    backend = {"backend": "redis", "redis_url": private_redis.url, "redis_prefix": "oom"}
    hub_a = RunningHub(make_settings(tmp_path / "a", hub_id="hub-a", **backend))
    hub_b = RunningHub(make_settings(tmp_path / "b", hub_id="hub-b", **backend))
    admin = aioredis.Redis.from_url(private_redis.url)
    await hub_a.start()
    await hub_b.start()
    try:
        operator = await hub_b.connect("/v1/ws/ops", await hub_b.token("operator", "op-b"))
        await receive_until(operator, "snapshot")
        assert (await readyz(hub_a))[0] == 200
        before = await restarts(hub_a, WRITER)

        await fill_memory(admin)
        # What a desk publishes on the operators' channel right after its store write: an
        # XADD, which Redis now refuses with OOM.
        marker = {"type": "incident", "id": "during-oom"}
        await hub_a.hub.bus.publish(
            OPS_CHANNEL, BusMessage(kind="incident", text=json.dumps(marker), urgent=True)
        )
        body = await wait_ready(hub_a, 503, timeout=2)
        assert body["checks"]["tasks"] is False and WRITER in body["tasks_down"]
        assert await restarts(hub_a, WRITER) > before
        await asyncio.sleep(1.5)  # restarted, refused again: still not ready
        assert (await readyz(hub_a))[0] == 503

        # Memory freed: no hub is restarted, the writer comes back by itself.
        await admin.delete("filler")
        await wait_ready(hub_a, 200, timeout=15)
        # The message refused during the outage was kept and crosses now, once.
        received = await receive_until(operator, "incident", timeout=5)
        assert received["id"] == "during-oom"

        # And what happens after it crosses too: a real SOS raised on hub A.
        tech = await hub_a.connect("/v1/ws/technician", await hub_a.token("technician", "t-1"))
        await receive_until(tech, "ack")
        await tech.send(json.dumps({"type": "sos", "id": "sos-after", "t": time.time()}))
        ack = await receive_until(tech, "sos_ack")
        raised = await receive_until(operator, "incident", timeout=5)
        assert raised["incident"]["id"] == ack["incident"]
        assert (await readyz(hub_b))[0] == 200
    finally:
        await admin.config_set("maxmemory", "0")
        await admin.aclose()
        await hub_a.stop()
        await hub_b.stop()
