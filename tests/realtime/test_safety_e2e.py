"""SOS over a real hub: operators at once, idempotent, durable, escalated once, notified."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from alerts.notify_payloads import SIGNATURE_HEADER, verify_signature
from tests.conftest import RunningHub, receive_json, receive_until

WEBHOOK_SECRET = "webhook-secret-for-tests"


async def operator(hub: RunningHub, sub: str = "op-1"):
    client = await hub.connect("/v1/ws/ops", await hub.token("operator", sub))
    snapshot = await receive_json(client)
    assert snapshot["type"] == "snapshot"
    return client, snapshot


async def technician(hub: RunningHub, sub: str = "tech-1"):
    client = await hub.connect("/v1/ws/technician", await hub.token("technician", sub))
    await receive_until(client, "ack")
    return client


def sos(client_id: str, **fields: Any) -> str:
    return json.dumps({"type": "sos", "id": client_id, "t": time.time(), **fields})


async def incident_audit(hub: RunningHub, incident_id: str) -> list[dict[str, Any]]:
    token = await hub.token("operator", "auditor")
    async with hub.client(token) as http:
        response = await http.get(f"/v1/incidents/{incident_id}")
    assert response.status_code == 200, response.text
    return response.json()["audit"]


async def test_sos_reaches_two_operators_within_a_second_and_is_one_incident(hub: RunningHub):
    await hub.create_booking(id="b-sos", technician_id="tech-1")
    assert (await hub.post("/v1/bookings/b-sos/en_route")).status_code == 200  # the visit on
    first, _ = await operator(hub, "op-1")
    second, _ = await operator(hub, "op-2")
    tech = await technician(hub)
    started = time.monotonic()
    await tech.send(sos("11111111-aaaa", lat=52.51, lon=13.40, note="help"))
    ack = await receive_until(tech, "sos_ack")
    seen = [await receive_until(client, "incident", timeout=1.0) for client in (first, second)]
    assert time.monotonic() - started < 1.0
    incident = seen[0]["incident"]
    assert ack["incident"] == incident["id"] and ack["id"] == "11111111-aaaa"
    assert seen[1]["incident"]["id"] == incident["id"]
    assert incident["reporter"] == {"sub": "tech-1", "role": "technician"}
    assert incident["booking_id"] == "b-sos" and incident["customer_id"] == "cust-1"
    assert incident["location"]["source"] == "sos"
    assert incident["address"]["source"] == "booking_address"

    # The same SOS again (a retry after a lost ack) is the same incident, not a new one.
    await tech.send(sos("11111111-aaaa"))
    again = await receive_until(tech, "sos_ack")
    assert again["incident"] == incident["id"]
    token = await hub.token("operator", "op-3")
    async with hub.client(token) as http:
        listed = (await http.get("/v1/incidents")).json()["incidents"]
    assert [i["id"] for i in listed] == [incident["id"]]


async def test_sos_without_coordinates_uses_the_last_fix_with_its_age(hub: RunningHub):
    tech = await technician(hub, "tech-9")
    fix_t = time.time() - 30
    await tech.send(
        json.dumps({"type": "location", "seq": 1, "t": fix_t, "lat": 52.5, "lon": 13.4})
    )
    await receive_until(tech, "ack")
    ops, _ = await operator(hub)
    await tech.send(sos("no-coords"))
    incident = (await receive_until(ops, "incident"))["incident"]
    assert incident["location"]["source"] == "last_fix"
    assert incident["location"]["t"] == pytest.approx(fix_t)


async def test_http_sos_works_with_the_socket_closed_and_ack_resolve_are_audited(hub: RunningHub):
    await hub.create_booking(id="b-http", technician_id="tech-2")
    ops, _ = await operator(hub)
    token = await hub.token("customer", "cust-1", "b-http")
    async with hub.client(token) as http:
        created = await http.post("/v1/sos", json={"id": "cust-sos-1", "t": time.time()})
        retried = await http.post("/v1/sos", json={"id": "cust-sos-1", "t": time.time()})
    assert created.status_code == 201, created.text
    assert retried.status_code == 200 and retried.json()["incident"] == created.json()["incident"]
    incident_id = created.json()["incident"]
    raised = (await receive_until(ops, "incident"))["incident"]
    assert raised["id"] == incident_id and raised["location"]["source"] == "booking_address"

    await ops.send(json.dumps({"type": "ack", "incident": incident_id, "note": "calling her"}))
    acked = await receive_until(ops, "incident")
    assert acked["incident"]["status"] == "acknowledged"
    await ops.send(
        json.dumps(
            {"type": "resolve", "incident": incident_id, "outcome": "safe", "note": "all fine"}
        )
    )
    resolved = await receive_until(ops, "incident")
    assert resolved["incident"]["status"] == "resolved"
    audit = await incident_audit(hub, incident_id)
    assert [(a["action"], a["actor"], a.get("note")) for a in audit][-2:] == [
        ("ack", "operator:op-1", "calling her"),
        ("resolve", "operator:op-1", "all fine"),
    ]
    # The customer sees the state of their own SOS, not the operators' notes.
    async with hub.client(token) as http:
        mine = (await http.get("/v1/sos/cust-sos-1")).json()
        assert mine["status"] == "resolved" and mine["outcome"] == "safe" and "audit" not in mine
        assert (await http.get("/v1/incidents")).status_code == 403


async def test_only_operators_act_on_incidents(hub: RunningHub):
    tech = await technician(hub, "tech-3")
    await tech.send(sos("t3-sos"))
    incident_id = (await receive_until(tech, "sos_ack"))["incident"]
    for role, sub, booking in (("technician", "tech-3", None), ("customer", "c", "b")):
        token = await hub.token(role, sub, booking)
        async with hub.client(token) as http:
            response = await http.post(f"/v1/incidents/{incident_id}/ack", json={})
            assert response.status_code == 403
            assert (await http.get(f"/v1/incidents/{incident_id}")).status_code == 403
    # A technician's socket has no "ack" message at all.
    await tech.send(json.dumps({"type": "ack", "incident": incident_id}))
    assert (await receive_until(tech, "error"))["code"] == "unknown_type"


async def test_reporter_cancels_within_the_grace_period(hub: RunningHub):
    ops, _ = await operator(hub)
    tech = await technician(hub, "tech-4")
    await tech.send(sos("pocket"))
    await receive_until(tech, "sos_ack")
    await tech.send(json.dumps({"type": "sos_cancel", "id": "pocket"}))
    status = await receive_until(tech, "sos_status")
    while status["status"] != "cancelled":
        status = await receive_until(tech, "sos_status")
    cancelled = await receive_until(ops, "incident")
    while cancelled["incident"]["status"] != "cancelled":
        cancelled = await receive_until(ops, "incident")
    _, snapshot = await operator(hub, "op-late")
    assert snapshot["incidents"] == []


async def test_the_reporters_live_location_streams_to_operators(hub: RunningHub):
    ops, _ = await operator(hub)
    tech = await technician(hub, "tech-5")
    await tech.send(sos("moving"))
    incident_id = (await receive_until(tech, "sos_ack"))["incident"]
    now = time.time()
    points = [
        {"seq": i, "t": now - 10 + i, "lat": 52.5 + i * 1e-4, "lon": 13.4} for i in range(1, 6)
    ]
    await tech.send(json.dumps({"type": "batch", "points": points}))
    seen = [await receive_until(ops, "incident_location") for _ in points]
    assert [s["incident"] for s in seen] == [incident_id] * 5
    assert [s["lat"] for s in seen] == [p["lat"] for p in points]  # every fix, in order


async def test_escalation_survives_a_restart_and_fires_once_on_time(hub_factory, receiver):
    hub = await hub_factory(
        escalation_t1_s=1.5,
        escalation_t2_s=60,
        supervisor_webhook_url=f"{receiver.url}/supervisor",
        webhook_secret=WEBHOOK_SECRET,
    )
    tech = await technician(hub, "tech-6")
    await tech.send(sos("restart-sos"))
    incident_id = (await receive_until(tech, "sos_ack"))["incident"]
    raised_at = time.time()
    await hub.restart()  # before T1: the timer must come back from the store
    ops, snapshot = await operator(hub)
    assert [i["id"] for i in snapshot["incidents"]] == [incident_id]
    realert = await receive_until(ops, "incident", timeout=10)
    while not (realert.get("reason") or "").startswith("escalation"):
        realert = await receive_until(ops, "incident", timeout=10)
    await receiver.wait_for(1)
    fired_after = time.time() - raised_at
    assert 1.4 <= fired_after < 4.0
    path, headers, body = receiver.requests[0]
    assert path == "/supervisor"
    assert verify_signature(
        WEBHOOK_SECRET.encode(), headers[SIGNATURE_HEADER.lower()], body, time.time()
    )
    assert json.loads(body)["incident"]["id"] == incident_id
    await asyncio.sleep(1.5)
    assert len(receiver.requests) == 1  # once, even though the hub restarted
    await hub.restart()
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == 1


async def test_a_failing_webhook_is_retried_then_dead_lettered_and_operators_see_it(
    hub_factory, receiver
):
    receiver.always_fail = True
    hub = await hub_factory(
        escalation_t1_s=0.2,
        escalation_t2_s=60,
        supervisor_webhook_url=f"{receiver.url}/supervisor",
        webhook_secret=WEBHOOK_SECRET,
    )
    ops, _ = await operator(hub)
    tech = await technician(hub, "tech-7")
    await tech.send(sos("dead-letter"))
    message = await receive_until(ops, "incident", timeout=30)
    while message.get("reason") != "delivery failed":
        message = await receive_until(ops, "incident", timeout=30)
    deliveries = message["incident"]["deliveries"]
    assert len(deliveries) == len(receiver.requests) > 1
    assert [d["attempt"] for d in deliveries] == list(range(1, len(deliveries) + 1))
    assert deliveries[-1]["dead_letter"] is True and not any(d["ok"] for d in deliveries)
    assert all(d["status"] == 503 for d in deliveries)


async def test_emergency_contacts_get_a_push_with_a_map_link(hub_factory, receiver):
    hub = await hub_factory(
        escalation_t1_s=0.1,
        escalation_t2_s=0.3,
        fcm_project_id="doorstep-test",
        fcm_endpoint=receiver.url,
        fcm_access_token="fixed-test-token",
    )
    async with hub.client() as http:
        response = await http.put(
            "/v1/people/technician/tech-8/contacts",
            json={"contacts": [{"name": "Mia", "fcm_tokens": ["device-token-1"]}]},
        )
        assert response.status_code == 200, response.text
    tech = await technician(hub, "tech-8")
    await tech.send(sos("contacts", lat=52.5, lon=13.4))
    await receive_until(tech, "sos_ack")
    await receiver.wait_for(1)
    path, headers, body = receiver.requests[0]
    assert path == "/v1/projects/doorstep-test/messages:send"
    assert headers["authorization"] == "Bearer fixed-test-token"
    message = json.loads(body)["message"]
    assert message["token"] == "device-token-1"
    assert "openstreetmap.org" in message["data"]["map_url"]


async def test_an_sos_that_cannot_be_stored_is_refused_not_acked(hub: RunningHub, monkeypatch):
    async def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(hub.hub.store, "save_incident", broken)
    tech = await technician(hub, "tech-10")
    await tech.send(sos("unstored"))
    error = await receive_until(tech, "error")
    assert error["code"] == "sos_not_stored"
    token = await hub.token("technician", "tech-10")
    async with hub.client(token) as http:
        response = await http.post("/v1/sos", json={"id": "unstored-http", "t": time.time()})
    assert response.status_code == 503 and response.json()["code"] == "sos_not_stored"
    with pytest.raises(TimeoutError):
        await receive_until(tech, "sos_ack", timeout=0.5)
    # The socket stays up: once the store works again the retried SOS is acknowledged.
    monkeypatch.undo()
    await tech.send(sos("unstored"))
    assert (await receive_until(tech, "sos_ack"))["id"] == "unstored"


class BlinkingSaves:
    """The real ``save_incident`` behind a store that blinks: the first ``failures`` calls
    raise a connection error, before writing or, with ``after_write``, after writing (the
    reply lost on the way back)."""

    def __init__(self, real: Any, failures: int, *, after_write: bool = False) -> None:
        self.real = real
        self.failures = failures
        self.after_write = after_write
        self.calls = 0

    async def __call__(self, *args: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            if self.after_write:
                await self.real(*args)
            raise ConnectionResetError("injected: connection reset by the store")
        await self.real(*args)


@pytest.mark.parametrize("after_write", [False, True], ids=["before-write", "reply-lost"])
async def test_an_sos_rides_out_a_store_blink_without_a_refusal(
    hub: RunningHub, monkeypatch, after_write: bool
):
    saves = BlinkingSaves(hub.hub.store.save_incident, 2, after_write=after_write)
    monkeypatch.setattr(hub.hub.store, "save_incident", saves)
    ops, _ = await operator(hub, "op-blink")
    tech = await technician(hub, "tech-blink")
    await tech.send(sos("blink"))
    ack = await receive_until(tech, "sos_ack")
    # One press, acknowledged: the hub retried the store itself, the reporter saw no error.
    # A write whose reply was lost is found by its reporter key, not written again.
    assert ack["id"] == "blink"
    assert saves.calls == (1 if after_write else 3)
    async with hub.client(await hub.token("operator", "op-blink")) as http:
        incidents = (await http.get("/v1/incidents")).json()["incidents"]
    assert [(i["client_id"], i["id"]) for i in incidents] == [("blink", ack["incident"])]
    # The operators hear of it either way: an incident stored but never announced would
    # reach no console and no escalation.
    raised = await receive_until(ops, "incident")
    assert raised["incident"]["id"] == ack["incident"]


async def test_an_sos_is_never_dropped_by_the_rate_limit(hub_factory):
    hub = await hub_factory(rate_per_s=1, rate_burst=2, rate_max_delay_s=60)
    tech = await technician(hub, "tech-11")
    now = time.time()
    for seq in range(1, 20):  # well over the limit: these wait in the backlog, 1 a second
        fix = {"type": "location", "seq": seq, "t": now, "lat": 52.5, "lon": 13.4}
        await tech.send(json.dumps(fix))
    await tech.send(sos("while-limited"))
    acked = -1
    while True:  # the SOS goes ahead of the fixes still waiting
        message = json.loads(await asyncio.wait_for(tech.recv(), 5))
        if message["type"] == "ack":
            acked = message["seq"]
        elif message["type"] == "sos_ack":
            assert message["id"] == "while-limited"
            break
    assert acked < 10, "the SOS waited for the backlog"


async def test_a_slow_operator_is_closed_and_loses_no_incident(hub_factory):
    """Incidents are never dropped: a console that stops reading is closed (1013) once its
    queue of undroppable messages is full, and its snapshot on reconnect has them all."""
    from tests.realtime.test_fanout import stalled_watcher

    hub = await hub_factory(send_queue_limit=8, send_buffer_bytes=4096, rate_burst=200)
    slow = await stalled_watcher(hub, "/v1/ws/ops", await hub.token("operator", "op-slow"))
    fast, _ = await operator(hub, "op-fast")
    tech = await technician(hub, "tech-12")
    raised = []
    # ~2.5 kB an incident message, 60 of them: more than the kernel buffers and asyncio's
    # 64 kB transport buffer hold, so the hub's writes to the stalled console block.
    for n in range(60):
        await tech.send(sos(f"burst-{n}", note="x" * 2000))
        raised.append((await receive_until(tech, "sos_ack"))["incident"])
    seen = set()
    while len(seen) < len(raised):
        seen.add((await receive_until(fast, "incident"))["incident"]["id"])
    # The stalled console was closed as a slow consumer...
    async with hub.client(None) as http:
        metrics = (await http.get("/metrics")).text
    assert 'doorstep_queue_drops_total{reason="slow_consumer"} 1.0' in metrics
    assert 'doorstep_closes_total{code="1013"} 1.0' in metrics
    del slow
    # ...and loses nothing: reconnecting, the snapshot holds every open incident.
    _, snapshot = await operator(hub, "op-slow")
    assert {i["id"] for i in snapshot["incidents"]} == set(raised)


async def test_a_citys_escalation_timer_replaces_the_hubs_for_its_incidents(hub_factory, receiver):
    # The hub's T1 is 60 s; the city "fast" re-alerts after 1 s. A technician of that city
    # raising SOS between visits is escalated on the city's timer, one of the default
    # city on the hub's (not within the test).
    hub = await hub_factory(
        escalation_t1_s=60,
        escalation_t2_s=120,
        supervisor_webhook_url=f"{receiver.url}/supervisor",
        webhook_secret=WEBHOOK_SECRET,
    )
    async with hub.client() as http:
        city = {"name": "Fast", "timezone": "Europe/Berlin", "escalation": {"realert_after_s": 1}}
        assert (await http.put("/v1/cities/fast", json=city)).status_code == 200
        profile = {"skills": [], "city": "fast"}
        assert (await http.put("/v1/technicians/tech-fast", json=profile)).status_code == 200
    slow = await technician(hub, "tech-slow")
    await slow.send(sos("slow-city-sos"))
    slow_incident = (await receive_until(slow, "sos_ack"))["incident"]
    fast = await technician(hub, "tech-fast")
    await fast.send(sos("fast-city-sos"))
    fast_incident = (await receive_until(fast, "sos_ack"))["incident"]
    raised_at = time.time()
    await receiver.wait_for(1)
    assert 0.9 <= time.time() - raised_at < 4.0
    await asyncio.sleep(1.0)
    assert [json.loads(body)["incident"]["id"] for _, _, body in receiver.requests] == [
        fast_incident
    ]
    audit = await incident_audit(hub, fast_incident)
    assert any("within 1 s" in (entry.get("note") or "") for entry in audit), audit
    token = await hub.token("operator", "auditor")
    async with hub.client(token) as http:
        stored = (await http.get(f"/v1/incidents/{fast_incident}")).json()
        other = (await http.get(f"/v1/incidents/{slow_incident}")).json()
    assert stored["city"] == "fast" and other["city"] == "default"
    assert "escalations" not in other  # omitted while empty: none fired
