"""An escalation step keeps its claim while its deliveries run (issue 11, item 6).

Two hubs on one Redis. The supervisor's webhook answers after 3 s, longer than the work
queue's reclaim time (1 s here, 30 s by default against a webhook whose retries can take
32.5 s). Before, the other hub reclaimed the live step and the supervisor was called twice;
now the working hub keeps the claim alive and the webhook is called once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from realtime.backends.redis import delete_all
from realtime.escalation import SAFETY_QUEUE
from tests.conftest import TEST_REDIS_URL, RunningHub, make_settings, receive_until
from tests.realtime.conftest import Receiver

pytestmark = pytest.mark.asyncio


async def test_a_slow_step_is_not_taken_over_by_another_hub(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.delay_s = 3.0
    prefix = f"doorstep-test-keep-{uuid.uuid4().hex[:10]}"
    settings = {
        "backend": "redis",
        "redis_url": TEST_REDIS_URL,
        "redis_prefix": prefix,
        "escalation_t1_s": 0.3,
        "escalation_t2_s": 60,
        "work_reclaim_idle_s": 1.0,
        "supervisor_webhook_url": f"{receiver.url}/supervisor",
        "webhook_secret": "webhook-secret-for-tests",
    }
    hubs = [
        RunningHub(make_settings(tmp_path / name, hub_id=name, **settings))
        for name in ("hub-a", "hub-b")
    ]
    for hub in hubs:
        await hub.start()
    try:
        tech = await hubs[0].connect(
            "/v1/ws/technician", await hubs[0].token("technician", "tech-k")
        )
        await receive_until(tech, "ack")
        await tech.send(json.dumps({"type": "sos", "id": "slow-step", "t": time.time()}))
        await receive_until(tech, "sos_ack")
        await receiver.wait_for(1, timeout=10)
        # The first delivery is in flight for 3 s: three reclaim times.
        await asyncio.sleep(4.5)
        assert [path for path, _, _ in receiver.requests] == ["/supervisor"]
    finally:
        for hub in hubs:
            await hub.stop()
        await delete_all(TEST_REDIS_URL, prefix)


@pytest.mark.parametrize("backend", ["embedded", "redis"])
async def test_a_live_step_cannot_be_claimed_by_another_consumer(
    tmp_path: Path, receiver: Receiver, backend: str
) -> None:
    """Deterministic: while the hub's slow delivery runs, another consumer (what a second hub
    is to the work queue) asks for idle work every 20 ms, far more often than the hub itself
    polls. Without the keep-alive it gets the live step as soon as it is idle for the reclaim
    time; with it, never."""
    receiver.delay_s = 3.0
    prefix = f"doorstep-test-thief-{uuid.uuid4().hex[:10]}"
    settings: dict[str, object] = {
        "escalation_t1_s": 0.3,
        "escalation_t2_s": 60,
        "work_reclaim_idle_s": 1.0,
        "supervisor_webhook_url": f"{receiver.url}/supervisor",
        "webhook_secret": "webhook-secret-for-tests",
    }
    if backend == "redis":
        settings |= {"backend": "redis", "redis_url": TEST_REDIS_URL, "redis_prefix": prefix}
    else:
        settings |= {"backend": "embedded"}
    hub = RunningHub(make_settings(tmp_path / "hub", hub_id="hub-a", **settings))
    await hub.start()
    try:
        tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "tech-t"))
        await receive_until(tech, "ack")
        await tech.send(json.dumps({"type": "sos", "id": "live-step", "t": time.time()}))
        await receive_until(tech, "sos_ack")
        await receiver.wait_for(1, timeout=10)  # the step is working: its delivery is in flight
        store = hub.hub.store
        stolen = []
        deadline = time.monotonic() + 2.5  # 2.5 reclaim times, all inside the 3 s delivery
        while time.monotonic() < deadline:
            stolen += await store.claim_work(
                SAFETY_QUEUE, "thief", count=16, now=hub.hub.clock(), reclaim_idle_s=1.0
            )
            await asyncio.sleep(0.02)
        assert stolen == []
    finally:
        await hub.stop()
        await delete_all(TEST_REDIS_URL, prefix)
