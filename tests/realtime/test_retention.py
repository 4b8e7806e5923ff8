"""The retention job over a real hub, on both backends: what is past its retention goes,
what is newer stays (docs/privacy.md). The hub's clock is moved forward (ShiftedClock) past
the retention of the first data; then newer data is made, and the job runs."""

from __future__ import annotations

import asyncio
import time

from realtime.backends.redis import Keys
from realtime.settings import Settings
from tests.conftest import PLATFORM_KEY, ShiftedClock
from tests.realtime.privacy_helpers import (
    DAY,
    backend_hub,  # noqa: F401 (a fixture)
    closed_booking,
    get_json,
    raise_sos,
    send_fixes,
    technician,
    track_seqs,
)

RETENTION = {
    "retention_history_s": 10 * DAY,
    "retention_booking_personal_s": 20 * DAY,
    "retention_incidents_s": 30 * DAY,
}


async def resolve(hub, token: str, incident_id: str) -> None:
    async with hub.client(token) as http:
        response = await http.post(f"/v1/incidents/{incident_id}/resolve", json={"outcome": "safe"})
    assert response.status_code == 200, response.text


async def test_data_past_its_retention_goes_when_the_job_runs_and_newer_data_stays(
    backend_hub,  # noqa: F811
):
    clock = ShiftedClock()
    hub = await backend_hub(clock=clock, **RETENTION)
    operator = await hub.token("operator", "op-1")
    # Old data, made now: fixes of two technicians, a closed and an open booking, a resolved
    # and an open incident.
    tech = await technician(hub, "tech-1")
    leaver = await technician(hub, "tech-2")
    await send_fixes(tech, range(1, 4), lambda seq: time.time() - 10 + seq)
    await send_fixes(leaver, range(1, 3), lambda seq: time.time() - 10 + seq)
    await leaver.close()
    fence = {
        "type": "Polygon",
        "coordinates": [[[13.404, 52.519], [13.406, 52.519], [13.406, 52.521], [13.404, 52.519]]],
    }
    await closed_booking(
        hub, "b-old", destination={"lat": 52.520008, "lon": 13.404954}, fence=fence
    )
    await hub.create_booking(id="b-open", technician_id="tech-1")
    old_resolved = await raise_sos(tech, "old-resolved")
    await resolve(hub, operator, old_resolved)
    old_open = await raise_sos(tech, "old-open")
    old_t = time.time()

    clock.advance(40 * DAY)  # past every retention of the data above
    await send_fixes(tech, range(4, 6), lambda seq: clock() - 10 + seq)
    await closed_booking(hub, "b-new")
    new_resolved = await raise_sos(tech, "new-resolved")
    await resolve(hub, operator, new_resolved)

    report = await hub.app.state.retention.run_once()

    assert report.store_purged
    assert report.fixes == 5  # tech-1's 1..3 and tech-2's 1..2
    assert report.incidents == 1 and report.bookings_redacted == 1
    # Location history: only the new fixes are left; the resume seq is not forgotten.
    assert await track_seqs(hub, operator, "tech-1", **{"from": old_t - 60, "to": old_t}) == []
    assert await track_seqs(hub, operator, "tech-1") == [4, 5]
    assert await track_seqs(hub, operator, "tech-2", **{"from": old_t - 60, "to": old_t}) == []
    assert await hub.hub.store.highest_seq("tech-2") == 2
    # The last position of the technician who left is gone from the roster and memory.
    assert await hub.hub.roster.positions(["tech-2"]) == {}
    assert (await hub.hub.roster.positions(["tech-1"]))["tech-1"].seq == 5
    assert hub.hub.fleet.last_position("tech-2") is None
    if hub.settings.backend == "redis":
        fixes, seqs, times, head = Keys(hub.settings.redis_prefix).technician("tech-2")
        redis = hub.hub.store.redis
        assert (await redis.xlen(fixes), await redis.scard(seqs), await redis.zcard(times)) == (
            0,
            0,
            0,
        )
        assert await redis.hget(head, "last") is None
    # Bookings: the old closed one is redacted in place, the new and the open ones are not.
    redacted = await get_json(hub, PLATFORM_KEY, "/v1/bookings/b-old")
    assert redacted["status"] == "cancelled" and redacted["customer_id"] == "cust-1"
    assert redacted["destination"] == {"lat": 52.52, "lon": 13.40}
    assert "fence" not in redacted and redacted["redacted_t"] >= clock() - 60
    assert "redacted_t" not in await get_json(hub, PLATFORM_KEY, "/v1/bookings/b-new")
    still_open = await get_json(hub, PLATFORM_KEY, "/v1/bookings/b-open")
    assert still_open["destination"] == {"lat": 52.52, "lon": 13.405}
    assert "redacted_t" not in still_open
    # Incidents: the old resolved one is gone, the open one and the new one stay.
    async with hub.client(operator) as http:
        assert (await http.get(f"/v1/incidents/{old_resolved}")).status_code == 404
        assert (await http.get(f"/v1/incidents/{old_open}")).status_code == 200
        assert (await http.get(f"/v1/incidents/{new_resolved}")).status_code == 200

    again = await hub.app.state.retention.run_once()
    assert again.deleted == 0  # idempotent: nothing more was due


async def test_the_job_runs_at_start(backend_hub):  # noqa: F811
    """Data due while the hub was down goes as soon as it starts again."""
    clock = ShiftedClock()
    hub = await backend_hub(clock=clock, **RETENTION)
    tech = await technician(hub, "tech-1")
    await send_fixes(tech, range(1, 3), lambda seq: time.time() - 10 + seq)
    await tech.close()
    clock.advance(11 * DAY)
    await hub.restart()
    for _ in range(100):
        if await hub.hub.store.last_fix("tech-1") is None:
            break
        await asyncio.sleep(0.05)
    assert await hub.hub.store.last_fix("tech-1") is None
    assert await hub.hub.store.highest_seq("tech-1") == 2


def test_redis_trims_the_history_by_the_shorter_of_memory_and_privacy() -> None:
    settings = Settings(redis_history_retention_s=2 * DAY, retention_history_s=1 * DAY)
    assert settings.effective_redis_history_retention_s == DAY
    settings = Settings(redis_history_retention_s=1 * DAY)
    assert settings.effective_redis_history_retention_s == DAY


async def test_a_citys_retention_replaces_the_hubs_for_its_bookings_and_old_quotes_go(
    backend_hub,  # noqa: F811
    monkeypatch,
):
    # The hub keeps closed bookings' personal fields 20 days; city "brief" keeps them 2.
    # Pages of 2 bookings: the default city's bookings, not yet due, must not stop the job
    # from reaching the brief city's ones behind them.
    monkeypatch.setattr("realtime.retention.REDACT_BATCH", 2)
    clock = ShiftedClock()
    hub = await backend_hub(clock=clock, **RETENTION)
    async with hub.client() as http:
        city = {"name": "Brief", "timezone": "Europe/Berlin", "retention_days": 2}
        assert (await http.put("/v1/cities/brief", json=city)).status_code == 200
        quote = await http.post(
            "/v1/quotes/travel",
            json={"origin": {"lat": 52.5, "lon": 13.4}, "destination": {"lat": 52.52, "lon": 13.4}},
        )
        assert quote.status_code == 201, quote.text
    for n in range(3):
        await closed_booking(hub, f"b-default-{n}")
    await closed_booking(hub, "b-brief", city="brief")
    clock.advance(3 * DAY)
    await closed_booking(hub, "b-brief-new", city="brief")

    report = await hub.app.state.retention.run_once()

    assert report.bookings_redacted == 1 and report.quotes == 1
    assert "redacted_t" in await get_json(hub, PLATFORM_KEY, "/v1/bookings/b-brief")
    for kept in ("b-default-0", "b-default-1", "b-default-2", "b-brief-new"):
        assert "redacted_t" not in await get_json(hub, PLATFORM_KEY, f"/v1/bookings/{kept}")
    async with hub.client() as http:
        assert (await http.get(f"/v1/quotes/{quote.json()['id']}")).status_code == 404
    clock.advance(18 * DAY)  # the default city's 20 days are over too
    again = await hub.app.state.retention.run_once()
    assert again.bookings_redacted == 4
