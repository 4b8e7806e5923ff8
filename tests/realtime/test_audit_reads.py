"""Operators' reads of a track or of contacts are audited and listed by ``GET /v1/audit``;
a track read covers the last 24 h by default and at most 7 days per request, unless an
incident of the technician covers the range. Over a real hub, on both backends."""

from __future__ import annotations

import time

from tests.conftest import PLATFORM_KEY, ShiftedClock
from tests.realtime.privacy_helpers import (
    DAY,
    backend_hub,  # noqa: F401 (a fixture)
    get_json,
    raise_sos,
    send_fixes,
    technician,
    track_seqs,
)

HOUR = 3600.0


async def track_status(hub, token: str, technician_id: str, **params: float):
    async with hub.client(token) as http:
        response = await http.get(f"/v1/technicians/{technician_id}/track", params=params)
    return response.status_code, response.json()


async def test_a_track_read_covers_24_hours_by_default_and_7_days_at_most(backend_hub):  # noqa: F811
    hub = await backend_hub(max_fix_age_s=3 * DAY)
    operator = await hub.token("operator", "op-1")
    tech = await technician(hub, "tech-1")
    now = time.time()
    times = {1: now - 30 * HOUR, 2: now - HOUR}
    await send_fixes(tech, range(1, 3), lambda seq: times[seq])

    feature = await get_json(hub, operator, "/v1/technicians/tech-1/track")
    assert feature["properties"]["seqs"] == [2]
    props = feature["properties"]
    assert 24 * HOUR - 1 <= props["to"] - props["from"] <= 24 * HOUR + 1
    # An explicit range reaches further back, within the 7 days.
    assert await track_seqs(hub, operator, "tech-1", **{"from": now - 7 * DAY, "to": now}) == [
        1,
        2,
    ]
    status, body = await track_status(hub, operator, "tech-1", **{"from": now - 8 * DAY, "to": now})
    assert (status, body["code"]) == (422, "out_of_range")
    assert "incident" in body["message"]
    status, body = await track_status(hub, operator, "tech-1", **{"from": 0})  # to: now
    assert (status, body["code"]) == (422, "out_of_range")


async def test_a_range_an_incident_covers_may_be_longer(backend_hub):  # noqa: F811
    clock = ShiftedClock()
    hub = await backend_hub(clock=clock)
    operator = await hub.token("operator", "op-1")
    tech = await technician(hub, "tech-1")
    raised_t = time.time()
    incident_id = await raise_sos(tech, "long-one")
    clock.advance(9 * DAY)  # still open nine days later

    covered = {"from": raised_t - 1800, "to": clock()}
    status, body = await track_status(hub, operator, "tech-1", **covered)
    assert status == 200, body
    too_early = {"from": raised_t - 3 * HOUR, "to": clock()}  # beyond the 1 h margin
    status, body = await track_status(hub, operator, "tech-1", **too_early)
    assert (status, body["code"]) == (422, "out_of_range")
    # Another technician's incident does not open this one's history.
    status, _ = await track_status(hub, operator, "tech-2", **covered)
    assert status == 422

    audit = await get_json(hub, PLATFORM_KEY, "/v1/audit", subject="tech-1")
    reads = [e for e in audit["entries"] if e["action"] == "track_read"]
    assert len(reads) == 1  # refused reads read nothing
    assert reads[0]["detail"] == {**covered, "incident": incident_id}


async def test_the_audit_lists_the_operators_reads_of_tracks_and_contacts(backend_hub):  # noqa: F811
    hub = await backend_hub()
    first = await hub.token("operator", "op-1")
    second = await hub.token("operator", "op-2")
    before = time.time()
    await track_seqs(hub, first, "tech-1", **{"from": before - 600, "to": before})
    await get_json(hub, second, "/v1/people/technician/tech-1/contacts")
    await get_json(hub, first, "/v1/people/customer/cust-1/contacts")
    await track_seqs(hub, first, "tech-9")

    audit = await get_json(hub, PLATFORM_KEY, "/v1/audit", subject="tech-1")
    assert audit["subject"] == "tech-1"
    assert [(e["action"], e["actor"], e["role"]) for e in audit["entries"]] == [
        ("track_read", "operator:op-1", "technician"),
        ("contacts_read", "operator:op-2", "technician"),
    ]
    first_read = audit["entries"][0]
    assert first_read["detail"] == {"from": before - 600, "to": before}
    assert before - 5 <= first_read["t"] <= time.time() + 1
    customer = await get_json(hub, PLATFORM_KEY, "/v1/audit", subject="cust-1")
    assert [(e["action"], e["subject"]) for e in customer["entries"]] == [
        ("contacts_read", "cust-1")
    ]
    newest = await get_json(hub, PLATFORM_KEY, "/v1/audit", subject="tech-1", limit=1)
    assert [e["action"] for e in newest["entries"]] == ["contacts_read"]
    async with hub.client() as http:
        missing = await http.get("/v1/audit")
    assert (missing.status_code, missing.json()["code"]) == (422, "invalid_field")
