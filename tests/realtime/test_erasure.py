"""``DELETE /v1/people/{role}/{id}/data`` over a real hub, on both backends: the person's
history, contacts, profile name and closed bookings' personal fields go; open bookings and
incidents stay, with the reason; the erasure is audited without the erased data."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from realtime.backends.redis import delete_all
from tests.conftest import PLATFORM_KEY, TEST_REDIS_URL
from tests.realtime.privacy_helpers import (
    backend_hub,  # noqa: F401 (a fixture)
    closed_booking,
    get_json,
    raise_sos,
    send_fixes,
    technician,
    track_seqs,
)

CONTACTS = {"contacts": [{"name": "Mia Example", "phone": "+4915112345678"}]}
HOME = {"lat": 52.520008, "lon": 13.404954}


async def erase(hub, role: str, person: str, token: str = PLATFORM_KEY):
    async with hub.client(token) as http:
        return await http.delete(f"/v1/people/{role}/{person}/data")


async def put(hub, path: str, body: dict) -> None:
    async with hub.client() as http:
        response = await http.put(path, json=body)
    assert response.status_code == 200, response.text


async def test_erasing_a_technician_removes_what_may_go_and_keeps_what_is_open(backend_hub):  # noqa: F811
    hub = await backend_hub()
    operator = await hub.token("operator", "op-1")
    await put(hub, "/v1/technicians/tech-1", {"skills": ["plumbing"], "name": "Anna Example"})
    await put(hub, "/v1/people/technician/tech-1/contacts", CONTACTS)
    await put(hub, "/v1/people/technician/tech-2/contacts", CONTACTS)
    tech = await technician(hub, "tech-1")
    other = await technician(hub, "tech-2")
    await send_fixes(tech, range(1, 4), lambda seq: time.time() - 10 + seq)
    await send_fixes(other, range(1, 2), lambda seq: time.time() - 10 + seq)
    await closed_booking(hub, "b-closed", technician_id="tech-1", destination=HOME)
    await hub.create_booking(id="b-open", technician_id="tech-1", destination=HOME)
    incident_id = await raise_sos(tech, "erase-me-not")
    await tech.close()

    response = await erase(hub, "technician", "tech-1")

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["erased"] == {
        "location_fixes": 3,
        "last_position": 1,
        "profile_name": 1,
        # b-closed was cancelled with tech-1 on it: one record in their visit ledger.
        "visit_history": 1,
        "quotes": 0,  # none was priced from their position
        "emergency_contacts": 1,
        "bookings_redacted": 1,
    }
    assert await hub.hub.visits.records("tech-1") == []
    kept = {(k["kind"], k["id"]): k for k in answer["kept"]}
    assert set(kept) == {("booking", "b-open"), ("incident", incident_id)}
    assert kept[("booking", "b-open")]["reason"].startswith("open")
    assert kept[("incident", incident_id)]["reason"] == "open: kept until it is resolved"

    assert await track_seqs(hub, operator, "tech-1") == []
    assert await track_seqs(hub, operator, "tech-2") == [1]  # someone else's: untouched
    assert await get_json(hub, PLATFORM_KEY, "/v1/people/technician/tech-1/contacts") == {
        "contacts": []
    }
    assert (await get_json(hub, PLATFORM_KEY, "/v1/people/technician/tech-2/contacts"))["contacts"]
    profile = await get_json(hub, PLATFORM_KEY, "/v1/technicians/tech-1")
    assert "name" not in profile and profile["skills"] == ["plumbing"]
    assert profile["position"] is None
    closed = await get_json(hub, PLATFORM_KEY, "/v1/bookings/b-closed")
    assert closed["destination"] == {"lat": 52.52, "lon": 13.40} and "redacted_t" in closed
    assert closed["technician_id"] == "tech-1" and closed["status"] == "cancelled"
    still = await get_json(hub, PLATFORM_KEY, "/v1/bookings/b-open")
    assert still["destination"] == HOME and "redacted_t" not in still
    async with hub.client(operator) as http:
        assert (await http.get(f"/v1/incidents/{incident_id}")).status_code == 200

    # Audited: who, what, counts; never the erased data itself.
    audit = await get_json(hub, PLATFORM_KEY, "/v1/audit", subject="tech-1")
    erasures = [e for e in audit["entries"] if e["action"] == "erase"]
    assert len(erasures) == 1
    assert erasures[0]["actor"] == "platform:platform" and erasures[0]["role"] == "technician"
    assert erasures[0]["detail"]["erased"]["location_fixes"] == 3
    assert erasures[0]["detail"]["kept"] == {"booking": 1, "incident": 1}
    text = json.dumps(audit)
    assert "Anna" not in text and "Mia" not in text and "+49151" not in text
    assert "52.520008" not in text

    # Again: nothing left to erase, and that is audited too.
    again = (await erase(hub, "technician", "tech-1")).json()
    assert again["erased"]["location_fixes"] == 0 and again["erased"]["bookings_redacted"] == 0
    audit = await get_json(hub, PLATFORM_KEY, "/v1/audit", subject="tech-1")
    assert [e["action"] for e in audit["entries"]].count("erase") == 2


async def test_erasing_a_customer_keeps_their_open_booking(backend_hub):  # noqa: F811
    hub = await backend_hub()
    await put(hub, "/v1/people/customer/cust-7/contacts", CONTACTS)
    await closed_booking(hub, "b-past", customer_id="cust-7", destination=HOME)
    await closed_booking(hub, "b-else", customer_id="cust-8", destination=HOME)
    await hub.create_booking(id="b-now", customer_id="cust-7", destination=HOME)

    response = await erase(hub, "customer", "cust-7")

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["erased"] == {"emergency_contacts": 1, "bookings_redacted": 1}
    assert [(k["kind"], k["id"]) for k in answer["kept"]] == [("booking", "b-now")]
    assert "redacted_t" in await get_json(hub, PLATFORM_KEY, "/v1/bookings/b-past")
    assert "redacted_t" not in await get_json(hub, PLATFORM_KEY, "/v1/bookings/b-else")
    assert (await get_json(hub, PLATFORM_KEY, "/v1/bookings/b-now"))["destination"] == HOME


@pytest.mark.parametrize(
    ("role", "sub", "booking"),
    [("operator", "op-1", None), ("technician", "tech-1", None), ("customer", "cust-1", "b1")],
)
async def test_only_the_platform_may_erase_or_read_the_audit(hub, role, sub, booking):
    token = await hub.token(role, sub, booking)
    response = await erase(hub, "technician", "tech-1", token)
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
    async with hub.client(token) as http:
        audit = await http.get("/v1/audit", params={"subject": "tech-1"})
    assert (audit.status_code, audit.json()["code"]) == (403, "forbidden")
    async with hub.client(None) as http:
        anonymous = await http.delete("/v1/people/technician/tech-1/data")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthorized")


async def test_an_unknown_kind_of_person_is_not_found(hub):
    response = await erase(hub, "operator", "op-1")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


async def test_an_erased_position_is_forgotten_by_every_hub(hub_factory, tmp_path):
    """Two hubs on one Redis: hub B learned the technician's last position (from the
    roster, as it does for its consoles); an erasure through hub A makes B forget it too."""
    prefix = f"doorstep-test-erase2-{uuid.uuid4().hex[:10]}"
    shared = {"backend": "redis", "redis_url": TEST_REDIS_URL, "redis_prefix": prefix}
    try:
        hub_a = await hub_factory(data_dir=tmp_path / "a", hub_id="hub-a", **shared)
        hub_b = await hub_factory(data_dir=tmp_path / "b", hub_id="hub-b", **shared)
        operator = await hub_b.token("operator", "op-1")
        tech = await technician(hub_a, "tech-e")
        await send_fixes(tech, range(1, 3), lambda seq: time.time() - 5 + seq)

        async def position_on_b():
            async with hub_b.client(operator) as http:
                response = await http.get("/v1/technicians/tech-e")
            return response.json().get("position") if response.status_code == 200 else None

        deadline = time.monotonic() + 5
        while await position_on_b() is None:
            assert time.monotonic() < deadline, "hub B never learned the position"
            await asyncio.sleep(0.1)
        await tech.close()

        assert (await erase(hub_a, "technician", "tech-e")).status_code == 200

        deadline = time.monotonic() + 2
        while (left := await position_on_b()) is not None:
            assert time.monotonic() < deadline, f"hub B still shows {left}"
            await asyncio.sleep(0.1)
    finally:
        await delete_all(TEST_REDIS_URL, prefix)
