"""The simulator against a real hub: simulated technicians reach customers and operators
through the SDK, dead zones go through its offline buffer, SOS presses raise incidents."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from clients import CustomerClient
from clients.platform import PlatformClient
from clients.sim_runs import book_trips
from clients.simulator import NetworkLink, PlannedFix, SimTrip, Simulator
from loadtest.sim_trips import plan_trips
from realtime.protocol import EtaMessage, Position
from tests.conftest import PLATFORM_KEY, RunningHub

SPEEDUP = 30.0  # a few real seconds cover a couple of minutes of driving


async def stored_track(hub: RunningHub, technician_id: str) -> dict[str, Any]:
    async with PlatformClient(hub.http, PLATFORM_KEY) as platform:
        return await platform.track(technician_id)


async def test_three_technicians_reach_customers_through_dead_zones_and_an_sos(hub: RunningHub):
    plans = plan_trips(3, seed=4, run_id="sim", dead_zones=False, sos_rate=0.0)
    # One technician drives through a dead zone, another presses SOS, both early in the trip.
    plans[0] = dataclasses.replace(plans[0], dead_zones=[(20.0, 50.0)])
    plans[1] = dataclasses.replace(plans[1], sos_at_s=15.0)
    async with PlatformClient(hub.http, PLATFORM_KEY) as platform:
        trips = await book_trips(platform, plans, speedup=SPEEDUP)
        booking = await platform.booking(plans[2].booking_id)
    assert booking["status"] == "en_route"

    customer = CustomerClient(
        hub.http,
        await hub.token("customer", plans[2].customer_id, booking=plans[2].booking_id),
        plans[2].booking_id,
    )
    positions: list[Position] = []
    etas: list[EtaMessage] = []
    customer.add_listener(lambda e: positions.append(e) if isinstance(e, Position) else None)
    customer.add_listener(lambda e: etas.append(e) if isinstance(e, EtaMessage) else None)
    started = time.time()
    async with customer:
        await customer.wait_connected(5)
        report = await Simulator(hub.http, trips, speedup=SPEEDUP).run(duration_s=4.0)
        await asyncio.sleep(0.3)  # the last fan-out
    finished = time.time()

    by_id = {r.technician_id: r for r in report.technicians}
    # The customer watched a technician move, with a live ETA.
    assert len(positions) >= 20
    assert len({(p.lat, p.lon) for p in positions}) >= 10
    assert etas and all(e.booking_id == plans[2].booking_id for e in etas)
    # Every fix was stored, none twice; times are real, never ahead of the hub's clock.
    for plan in plans:
        tech = by_id[plan.technician_id]
        assert tech.sent > 50 and tech.unacked == 0 and tech.rejected == 0
        track = (await stored_track(hub, plan.technician_id))["properties"]
        assert track["seqs"] == list(range(tech.sent))
        assert started - 1 <= min(track["times"]) <= max(track["times"]) <= finished + 1
    # The dead zone: fixes waited in the SDK's buffer, then went over a new connection.
    zoned = by_id[plans[0].technician_id]
    assert zoned.dead_zones == 1
    assert zoned.buffered_in_dead_zones > 0
    assert zoned.connections >= 2
    # The SOS press raised an incident that operators see.
    sos = by_id[plans[1].technician_id]
    assert sos.sos_incident is not None and sos.sos_error is None
    async with hub.client(await hub.token("operator", "op-1")) as http:
        incident = (await http.get(f"/v1/incidents/{sos.sos_incident}")).json()
    assert incident["technician_id"] == plans[1].technician_id
    assert incident["status"] == "open"


async def test_a_fix_is_stamped_with_the_moment_it_is_sent_not_with_trip_time(hub: RunningHub):
    # Two fixes an hour apart in trip time, at 3600x: both sent (and stamped) within a second
    # or two of real time, so the hub (which refuses fixes > 120 s ahead) takes both.
    token = await hub.token("technician", "t-clock")
    fixes = [PlannedFix(0.0, 52.52, 13.40, 8.0, 10.0), PlannedFix(3600.0, 52.53, 13.41, 8.0, 10.0)]
    trip = SimTrip("t-clock", token, fixes)
    before = time.time()
    report = await Simulator(hub.http, [trip], speedup=3600).run()
    after = time.time()
    assert report.technicians[0].unacked == 0 and report.technicians[0].finished
    times = (await stored_track(hub, "t-clock"))["properties"]["times"]
    assert len(times) == 2
    assert before - 0.1 <= times[0] < times[1] <= after
    assert times[1] - times[0] == pytest.approx(1.0, abs=0.05)


async def test_a_cut_link_drops_connections_and_refuses_new_ones_until_restored(
    hub: RunningHub,
):
    link = NetworkLink("127.0.0.1", hub.port)
    await link.start()
    try:
        async with hub.client() as http:
            http.base_url = f"http://{link.address}"
            assert (await http.get("/healthz")).status_code == 200
            link.cut()
            with pytest.raises(Exception):  # noqa: B017 - a reset, whatever httpx calls it
                await http.get("/healthz")
            link.restore()
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await link.close()


async def test_stopping_a_run_flushes_and_reports(hub: RunningHub):
    token = await hub.token("technician", "t-stop")
    fixes = [PlannedFix(float(i), 52.52 + i * 1e-5, 13.40) for i in range(600)]
    simulator = Simulator(hub.http, [SimTrip("t-stop", token, fixes)], speedup=20)
    run = asyncio.create_task(simulator.run())
    await asyncio.sleep(1.0)
    simulator.stop()
    report = await asyncio.wait_for(run, 15)
    tech = report.technicians[0]
    assert 5 < tech.sent < 600 and not tech.finished and tech.unacked == 0
