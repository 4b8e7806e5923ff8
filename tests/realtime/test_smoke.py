import json
import time

from tests.conftest import receive_json, receive_until


async def test_fix_reaches_customer(hub):
    booking = await hub.create_booking(id="b1", technician_id="tech-1")
    assert booking["status"] == "assigned"
    # Positions are shown from en_route (the technician's current visit).
    booking = (await hub.post("/v1/bookings/b1/en_route")).json()
    assert booking["status"] == "en_route"
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "tech-1"))
    assert (await receive_json(tech)) == {"type": "ack", "seq": -1}
    assert (await receive_json(tech))["type"] == "booking"
    cust = await hub.connect("/v1/ws/bookings/b1", await hub.token("customer", "cust-1", "b1"))
    snap = await receive_json(cust)
    assert snap["type"] == "snapshot"
    fix = {"type": "location", "seq": 1, "t": time.time(), "lat": 52.5, "lon": 13.4}
    await tech.send(json.dumps(fix))
    pos = await receive_until(cust, "position")
    assert pos["seq"] == 1
    ack = await receive_until(tech, "ack")
    assert ack["seq"] == 1
