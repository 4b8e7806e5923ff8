"""Supervised background tasks: restarted with backoff, counted, and reported down meanwhile.

The restart policy is pure (``TaskHealth``, time passed in); the supervisor is tested with
real tasks, and over a real hub: a hub task made to raise is restarted, counted in
``doorstep_task_restarts_total`` and ``/readyz`` answers 503 until it runs again.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from realtime.aio import stop_tasks
from realtime.tasks import Supervisor, TaskHealth
from tests.conftest import RunningHub, make_settings

# ------------------------------------------------------------------ policy (pure)


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_settled_run() -> None:
    health = TaskHealth(backoff_min_s=0.1, backoff_max_s=1.0, settle_s=2.0)
    health.started(0.0)
    delays = []
    now = 0.0
    for _ in range(6):
        now += 0.01
        delays.append(health.failed(now))  # fails at once each time
        health.started(now + delays[-1])
        now += delays[-1]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    # A run that lasted longer than settle_s: the next failure is a fresh outage.
    assert health.failed(now + 5.0) == 0.1
    assert health.restarts == 7


def test_down_from_a_failure_until_a_restarted_run_settled() -> None:
    health = TaskHealth(settle_s=1.0)
    health.started(0.0)
    assert health.up(0.0)  # never failed
    health.failed(10.0)
    assert not health.up(10.05)  # waiting to restart
    health.started(10.1)
    assert not health.up(10.5)  # running again, not yet for long
    assert health.up(11.2)
    health.failed(11.3)
    assert not health.up(20.0)  # failed again, not restarted yet


# ------------------------------------------------------------------ supervisor


@pytest.mark.asyncio
async def test_a_failing_task_is_restarted_and_counted_and_down_meanwhile() -> None:
    restarted: list[str] = []
    runs = 0
    healed = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError("boom")  # e.g. an OOM reply from Redis
        healed.set()
        await asyncio.sleep(3600)

    tasks = Supervisor(restarted.append, backoff_min_s=0.01, backoff_max_s=0.05, settle_s=0.2)
    task = tasks.spawn("flaky", flaky)
    other = tasks.spawn("optional", flaky, needed=False)
    async with asyncio.timeout(5):
        await healed.wait()
    assert "flaky" in tasks.down()  # running again, not settled yet
    assert "optional" not in tasks.down()
    await asyncio.sleep(0.3)
    assert tasks.down() == []
    assert restarted.count("flaky") + restarted.count("optional") == 2
    await stop_tasks([task, other])
    assert task.cancelled()


@pytest.mark.asyncio
async def test_a_task_that_returns_is_done_not_restarted() -> None:
    restarted: list[str] = []

    async def once() -> None:
        return None

    tasks = Supervisor(restarted.append)
    task = tasks.spawn("once", once)
    async with asyncio.timeout(1):
        await task
    assert restarted == [] and tasks.down() == []


# ------------------------------------------------------------------ over a real hub


async def _restarts(http: httpx.AsyncClient, task: str) -> float:
    text = (await http.get("/metrics")).text
    found = re.search(rf'doorstep_task_restarts_total{{task="{task}"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


@pytest.mark.asyncio
async def test_a_hub_task_that_raises_is_restarted_and_the_hub_not_ready_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = RunningHub(make_settings(tmp_path, fleet_interval_s=0.05))
    await hub.start()
    try:
        failures = 0

        async def broken_look_around(*_: object) -> None:
            nonlocal failures
            failures += 1
            raise RuntimeError("roster away")

        async with httpx.AsyncClient(base_url=hub.http, timeout=5) as http:
            assert (await http.get("/readyz")).status_code == 200
            # The fleet loop calls look_around when a technician's socket closed.
            monkeypatch.setattr(hub.hub.fleet, "look_around", broken_look_around)
            tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "t-1"))
            await tech.close()
            for _ in range(50):
                response = await http.get("/readyz")
                if response.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            assert response.status_code == 503
            assert response.json()["tasks_down"] == ["doorstep-fleet"]
            assert await _restarts(http, "doorstep-fleet") >= 1
            monkeypatch.undo()  # healed: the restarted loop runs on
            for _ in range(100):
                response = await http.get("/readyz")
                if response.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert response.status_code == 200
    finally:
        await hub.stop()
