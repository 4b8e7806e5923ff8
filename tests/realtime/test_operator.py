"""The operator's console socket: who is online and where, batched.

The contract (docs/protocol.md): ``WS /v1/ws/ops`` first sends a ``snapshot`` whose
``fleet`` lists the technicians online now; then ``fleet`` messages carry only the
technicians whose position or presence changed, at most once per ``fleet_interval_s``
(0.2 s in the test hubs), so a technician sending many fixes costs the console one entry
per interval, with the newest position.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.conftest import RunningHub, receive_json, receive_until


def location(seq: int, t: float) -> dict[str, Any]:
    return {
        "type": "location",
        "seq": seq,
        "t": t,
        "lat": 48.85 + seq * 1e-4,
        "lon": 2.35 + seq * 1e-4,
        "acc": 8.0,
        "speed": 4.5,
        "heading": 90.0,
    }


async def technician(hub: RunningHub, technician_id: str) -> ClientConnection:
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", technician_id))
    assert (await receive_json(tech))["type"] == "ack"
    return tech


async def operator(hub: RunningHub) -> tuple[ClientConnection, dict[str, Any]]:
    """A connected console and its snapshot."""
    console = await hub.connect("/v1/ws/ops", await hub.token("operator", "op-1"))
    snapshot = await receive_json(console)
    assert snapshot["type"] == "snapshot"
    return console, snapshot


async def acked(tech: ClientConnection, seq: int) -> None:
    while (message := await receive_until(tech, "ack"))["seq"] < seq:
        pass
    assert message["seq"] == seq


def entry(technician_id: str, online: bool, fix: dict[str, Any] | None = None) -> dict[str, Any]:
    """A fleet entry as the console receives it (no profile, no visit: idle or offline)."""
    status = "idle" if online else "offline"
    if fix is None:
        return {"technician_id": technician_id, "online": online, "status": status}
    position = {k: fix[k] for k in ("t", "lat", "lon", "acc", "speed", "heading")}
    return {"technician_id": technician_id, "online": online, **position, "status": status}


async def next_fleet(console: ClientConnection, timeout: float = 2.0) -> list[dict[str, Any]]:
    message = await receive_json(console, timeout)
    assert message["type"] == "fleet"
    return message["positions"]


async def test_the_snapshot_lists_the_technicians_online_now(hub):
    tech1 = await technician(hub, "tech-1")
    fix = location(1, time.time())
    await tech1.send(json.dumps(fix))
    await acked(tech1, 1)
    tech2 = await technician(hub, "tech-2")

    console, snapshot = await operator(hub)
    assert snapshot["fleet"] == [entry("tech-1", True, fix), entry("tech-2", True)]

    # tech-2 leaves: the console hears it, and a console opened later does not list it.
    await tech2.close()
    while entry("tech-2", False) not in await next_fleet(console):
        pass
    _, later = await operator(hub)
    assert later["fleet"] == [entry("tech-1", True, fix)]


async def test_fleet_updates_are_batched_and_carry_the_newest_position(hub):
    console, snapshot = await operator(hub)
    assert snapshot["fleet"] == []

    tech = await technician(hub, "tech-1")
    assert await next_fleet(console) == [entry("tech-1", True)]  # online, no position yet

    t0 = time.time() - 5
    fixes = [location(seq, t0 + seq * 0.1) for seq in range(1, 21)]
    for fix in fixes:  # back to back: a few milliseconds
        await tech.send(json.dumps(fix))
    await acked(tech, 20)

    updates = []
    while not updates or updates[-1] != [entry("tech-1", True, fixes[-1])]:
        updates.append(await next_fleet(console))
    # 20 fixes within one or two fleet intervals: one or two updates, not twenty.
    assert len(updates) <= 2, updates
    assert all([e["technician_id"] for e in update] == ["tech-1"] for update in updates)
    # Nothing changed since: no more updates.
    with pytest.raises(TimeoutError):
        await receive_json(console, timeout=0.5)

    await tech.close()
    assert await next_fleet(console) == [entry("tech-1", False, fixes[-1])]


async def test_the_console_refuses_inbound_frames_and_stays_up(hub):
    console, _ = await operator(hub)
    await console.send(json.dumps({"type": "location", "seq": 1}))
    error = await receive_json(console)
    assert (error["type"], error["code"]) == ("error", "unknown_type")

    tech = await technician(hub, "tech-1")
    assert await next_fleet(console) == [entry("tech-1", True)]
    await tech.close()
