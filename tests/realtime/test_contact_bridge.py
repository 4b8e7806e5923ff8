"""The SMS/voice bridge gets what a caller needs (who, where, a map link, which incident),
never the trail, the notes, the audit or the deliveries; the supervisor (staff) gets the
whole incident. Over a real hub and the local webhook receiver."""

from __future__ import annotations

import asyncio
import json
import time

from tests.realtime.privacy_helpers import raise_sos, send_fixes, technician

WEBHOOK_SECRET = "webhook-secret-for-tests"
NOTE = "in the basement, door code 4711"


async def test_the_contact_bridge_gets_who_where_and_a_map_link_not_the_trail(
    hub_factory, receiver
):
    hub = await hub_factory(
        escalation_t1_s=0.2,
        escalation_t2_s=3.0,  # after the first trail flush (every 2 s)
        supervisor_webhook_url=f"{receiver.url}/supervisor",
        contact_webhook_url=f"{receiver.url}/contacts",
        webhook_secret=WEBHOOK_SECRET,
    )
    async with hub.client() as http:
        for path, body in (
            ("/v1/technicians/tech-1", {"name": "Anna Example"}),
            (
                "/v1/people/technician/tech-1/contacts",
                {"contacts": [{"name": "Mia", "phone": "+4915112345678"}]},
            ),
        ):
            assert (await http.put(path, json=body)).status_code == 200
    tech = await technician(hub, "tech-1")
    incident_id = await raise_sos(tech, "bridge", lat=52.5, lon=13.4, note=NOTE)
    await asyncio.sleep(0.1)
    await send_fixes(tech, range(1, 4), lambda seq: time.time() - 4 + seq)  # the trail

    await receiver.wait_for(2, timeout=15)
    by_path = {path: json.loads(body) for path, _, body in receiver.requests}
    contact = by_path["/contacts"]
    assert contact["incident"]["id"] == incident_id and contact["incident"]["kind"] == "sos"
    assert contact["person"] == {"name": "Anna Example (technician)", "role": "technician"}
    assert contact["contact"] == {"name": "Mia", "phone": "+4915112345678"}
    assert contact["location"]["lat"] == 52.5 and contact["location"]["lon"] == 13.4
    assert contact["map_url"].startswith("https://www.openstreetmap.org/?mlat=52.500000")
    assert "openstreetmap.org" in contact["text"]
    text = json.dumps(contact)
    for private in ("trail", "audit", "deliveries", "note", NOTE, "escalations"):
        assert private not in text, private

    # The supervisor is staff: the whole incident, trail and notes included.
    supervisor = by_path["/supervisor"]["incident"]
    assert supervisor["id"] == incident_id and supervisor["note"] == NOTE
    assert "audit" in supervisor
    stored = await hub.hub.store.get_incident(incident_id)
    assert stored is not None and len(stored.trail) == 3  # there was a trail to leak
