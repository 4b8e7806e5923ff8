"""Operator groups (issue 15, cities): an operator whose token carries a group sees and acts
on the incidents and alerts of the cities that group watches, and of cities with no group;
one without a group sees every city. Over a real hub."""

from __future__ import annotations

import json
import time

from tests.conftest import RunningHub, receive_json, receive_until


async def put(hub: RunningHub, path: str, body: dict) -> None:
    async with hub.client() as http:
        response = await http.put(path, json=body)
    assert response.status_code == 200, response.text


async def operator_token(hub: RunningHub, sub: str, group: str | None) -> str:
    body = {"role": "operator", "sub": sub, **({"group": group} if group else {})}
    async with hub.client() as http:
        response = await http.post("/v1/tokens", json=body)
    assert response.status_code == 201, response.text
    assert response.json().get("group") == group
    return response.json()["token"]


async def console(hub: RunningHub, token: str):
    client = await hub.connect("/v1/ws/ops", token)
    snapshot = await receive_json(client)
    assert snapshot["type"] == "snapshot"
    return client, snapshot


async def raise_sos(hub: RunningHub, technician_id: str, client_id: str) -> str:
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", technician_id))
    await receive_until(tech, "ack")
    await tech.send(json.dumps({"type": "sos", "id": client_id, "t": time.time()}))
    return (await receive_until(tech, "sos_ack"))["incident"]


async def test_an_operator_of_a_group_sees_only_its_cities_and_one_without_sees_all(
    hub: RunningHub,
):
    await put(
        hub,
        "/v1/cities/north",
        {"name": "North", "timezone": "Europe/Berlin", "operator_group": "team-north"},
    )
    await put(
        hub,
        "/v1/cities/south",
        {"name": "South", "timezone": "Europe/Rome", "operator_group": "team-south"},
    )
    await put(hub, "/v1/technicians/tech-n", {"city": "north"})
    await put(hub, "/v1/technicians/tech-s", {"city": "south"})
    north_token = await operator_token(hub, "op-north", "team-north")
    everyone_token = await operator_token(hub, "op-all", None)
    north, _ = await console(hub, north_token)
    everyone, _ = await console(hub, everyone_token)

    south_incident = await raise_sos(hub, "tech-s", "sos-south")
    no_city_incident = await raise_sos(hub, "tech-x", "sos-nowhere")  # default: no group
    north_incident = await raise_sos(hub, "tech-n", "sos-north")

    seen_by_all = [(await receive_until(everyone, "incident"))["incident"]["id"] for _ in range(3)]
    assert seen_by_all == [south_incident, no_city_incident, north_incident]
    seen_by_north = [(await receive_until(north, "incident"))["incident"]["id"] for _ in range(2)]
    assert seen_by_north == [no_city_incident, north_incident]  # never south's

    # A new console of the group: its snapshot holds the same two.
    _, snapshot = await console(hub, north_token)
    assert {i["id"] for i in snapshot["incidents"]} == {no_city_incident, north_incident}
    async with hub.client(north_token) as http:
        listed = (await http.get("/v1/incidents")).json()["incidents"]
        assert {i["id"] for i in listed} == {no_city_incident, north_incident}
        # Another group's incident is not theirs to read or act on: as if it did not exist.
        assert (await http.get(f"/v1/incidents/{south_incident}")).status_code == 404
        ack = await http.post(f"/v1/incidents/{south_incident}/ack", json={})
        assert (ack.status_code, ack.json()["code"]) == (404, "not_found")
        assert (await http.post(f"/v1/incidents/{north_incident}/ack", json={})).status_code == 200
    async with hub.client(everyone_token) as http:
        assert (await http.post(f"/v1/incidents/{south_incident}/ack", json={})).status_code == 200


async def test_only_operator_tokens_carry_a_group(hub: RunningHub):
    async with hub.client() as http:
        response = await http.post(
            "/v1/tokens", json={"role": "technician", "sub": "t-1", "group": "team-north"}
        )
    assert (response.status_code, response.json()["code"]) == (422, "invalid_field")
