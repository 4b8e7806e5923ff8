"""Travel-fee quotes over a real hub (issue 15, item 4): priced by the city's tariff at the
city's local time, with a breakdown, a version and 5 minutes to live; carried by bookings;
the distance actually driven recorded beside the quoted one after check-in.

The route comes from a stand-in routing engine (``tests/realtime/conftest.py``'s OSRM,
4321.5 m unless told otherwise), so the distance line is exact: 4321.5 m counts as 4322
whole metres (half up), 4.322 km. Amounts are cents; the worked lines are in comments.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from websockets.asyncio.client import ClientConnection

from geofence.geo import destination_point
from tests.conftest import RunningHub, ShiftedClock, receive_until
from tests.realtime.conftest import FakeOsrm

HOME = (52.5200, 13.4050)
BERLIN = ZoneInfo("Europe/Berlin")
QUOTE_TTL_S = 300.0


def east(metres: float) -> tuple[float, float]:
    return destination_point(*HOME, 90.0, metres)


def hhmm(hour: int) -> str:
    return f"{hour % 24:02d}:00"


def point(at: tuple[float, float]) -> dict[str, float]:
    return {"lat": at[0], "lon": at[1]}


def windows_now(hub: RunningHub) -> tuple[dict[str, str], dict[str, str]]:
    """A window covering now in Berlin time, and one covering now only on a UTC clock
    (it ends, an hour or more before Berlin's hour now, since Berlin is UTC+1 in winter
    and UTC+2 in summer)."""
    now = hub.hub.clock()
    berlin = datetime.fromtimestamp(now, BERLIN).hour
    utc = datetime.fromtimestamp(now, UTC).hour
    return (
        {"start": hhmm(berlin - 1), "end": hhmm(berlin + 2)},
        {"start": hhmm(utc - 1), "end": hhmm(utc + 1)},
    )


async def put_city(hub: RunningHub, city_id: str, tariff: dict[str, Any], **fields: Any) -> None:
    body = {"name": city_id.title(), "timezone": "Europe/Berlin", "tariff": tariff, **fields}
    async with hub.client() as http:
        response = await http.put(f"/v1/cities/{city_id}", json=body)
    assert response.status_code == 200, response.text


async def quote(hub: RunningHub, **body: Any) -> dict[str, Any]:
    response = await hub.post("/v1/quotes/travel", body)
    assert response.status_code == 201, response.text
    return response.json()


async def booking_after_check_in(hub: RunningHub, booking_id: str) -> dict[str, Any]:
    """The booking once the bookkeeping after its check-in (the distance driven, kept in the
    background so it never holds up the arrival decisions) is done."""
    await hub.hub.bookings.afterwards.drain()
    async with hub.client() as http:
        return (await http.get(f"/v1/bookings/{booking_id}")).json()


def lines(quote_body: dict[str, Any]) -> list[tuple[str, int]]:
    return [(line["code"], line["amount_minor"]) for line in quote_body["fee"]["breakdown"]]


async def go_online(hub: RunningHub, technician_id: str, at: tuple[float, float]):
    tech = await hub.connect(
        "/v1/ws/technician", await hub.token("technician", technician_id, ttl=3600)
    )
    await receive_until(tech, "ack")
    await send_fixes(tech, [(hub.hub.clock(), at)], 1)
    return tech


async def send_fixes(tech: ClientConnection, points: list[tuple[float, Any]], seq: int) -> int:
    """Send (t, (lat, lon)) points in batches of 50; returns the next seq."""
    for start in range(0, len(points), 50):
        chunk = []
        for t, (lat, lon) in points[start : start + 50]:
            chunk.append({"seq": seq, "t": t, "lat": lat, "lon": lon, "acc": 8.0})
            seq += 1
        await tech.send(json.dumps({"type": "batch", "points": chunk}))
        ack = await receive_until(tech, "ack")
        while ack["seq"] < seq - 1:
            ack = await receive_until(tech, "ack")
    return seq


@pytest.fixture
async def quoting(hub_factory: Callable[..., Any], osrm: FakeOsrm) -> RunningHub:
    """A hub with a routing engine and a clock the test can move."""
    return await hub_factory(osrm_url=osrm.url, clock=ShiftedClock())


BASE_TARIFF = {
    "version": "v1",
    "currency": "EUR",
    "base_fee": 2.5,
    "free_km": 1.0,
    "per_km": 0.8,
    "cap": 8.0,
}


# ---------------------------------------------------------------------------- pricing


async def test_quote_by_origin_and_destination_in_a_peak_hour(quoting: RunningHub, osrm: FakeOsrm):
    berlin_now, _ = windows_now(quoting)
    tariff = {**BASE_TARIFF, "peak": [berlin_now], "peak_multiplier": 1.5}
    await put_city(quoting, "berlin", tariff)
    origin, destination = east(3000.0), HOME
    before = quoting.hub.clock()
    body = await quote(quoting, city="berlin", origin=point(origin), destination=point(destination))
    after = quoting.hub.clock()
    # base 2.50; 4.322 km - 1 km free = 3.322 km x 0.80 = 2.6576 -> 2.66; time 0;
    # subtotal 5.16; peak x 1.5: 0.5 x 516 = 258; total 7.74 (under the 8.00 cap).
    assert lines(body) == [("base", 250), ("distance", 266), ("time", 0), ("peak", 258)]
    fee = body["fee"]
    assert (fee["total_minor"], fee["currency"], fee["minor_digits"]) == (774, "EUR", 2)
    assert fee["breakdown"][1]["detail"] == "4.322 km - 1 km free = 3.322 km x 0.80"
    assert fee["breakdown"][0]["detail"] == "base fee 2.50"
    assert (fee["peak"], fee["night"]) == (True, False)
    assert fee["local_time"].endswith("+01:00")  # Berlin in December
    assert body["tariff_version"] == fee["tariff_version"] == "v1"
    assert (body["city"], body["distance_m"], body["route_source"]) == (
        "berlin",
        4321.5,
        "routing_engine",
    )
    assert body["origin"] == point(origin) and body["destination"] == point(destination)
    assert before <= body["created_t"] <= after
    assert body["expires_at"] - body["created_t"] == pytest.approx(QUOTE_TTL_S, abs=1e-6)
    assert body["duration_s"] > 0
    # The routing engine was asked lon,lat;lon,lat from the origin to the door.
    coordinates = osrm.seen[-1].path_params["coordinates"]
    assert coordinates == (
        f"{origin[1]:.6f},{origin[0]:.6f};{destination[1]:.6f},{destination[0]:.6f}"
    )
    async with quoting.client() as http:
        stored = await http.get(f"/v1/quotes/{body['id']}")
    assert stored.status_code == 200 and stored.json() == body


async def test_cap_and_minimum_and_a_utc_only_window(quoting: RunningHub, osrm: FakeOsrm):
    berlin_now, utc_only = windows_now(quoting)
    tariff = {**BASE_TARIFF, "peak": [berlin_now], "peak_multiplier": 1.5}
    await put_city(quoting, "berlin", tariff)
    osrm.distance_m = 9000.0
    capped = await quote(quoting, city="berlin", origin=point(east(9000)), destination=point(HOME))
    # base 250; 8 km x 0.80 = 640; subtotal 890; peak 445; 1335 above the 8.00 cap: -535.
    assert lines(capped) == [
        ("base", 250),
        ("distance", 640),
        ("time", 0),
        ("peak", 445),
        ("cap", -535),
    ]
    assert capped["fee"]["total_minor"] == 800

    # The window covers now on a UTC clock only: no surcharge in Berlin. A 500 m trip is
    # inside the free kilometre: 2.50, raised to the 6.00 minimum.
    cheap = {**BASE_TARIFF, "version": "v2", "peak": [utc_only], "peak_multiplier": 3.0}
    await put_city(quoting, "berlin", {**cheap, "minimum": 6.0})
    osrm.distance_m = 500.0
    short = await quote(quoting, city="berlin", origin=point(east(500)), destination=point(HOME))
    assert lines(short) == [("base", 250), ("distance", 0), ("time", 0), ("minimum", 350)]
    assert (short["fee"]["total_minor"], short["fee"]["peak"]) == (600, False)
    assert short["tariff_version"] == "v2"


async def test_night_and_peak_at_once_only_the_larger_counts(quoting: RunningHub):
    berlin_now, _ = windows_now(quoting)
    tariff = {
        **BASE_TARIFF,
        "version": "night-2026",
        "cap": None,
        "night": berlin_now,
        "night_multiplier": 2.0,
        "peak": [berlin_now],
        "peak_multiplier": 1.5,
    }
    await put_city(quoting, "berlin", tariff)
    body = await quote(quoting, city="berlin", origin=point(east(3000)), destination=point(HOME))
    # subtotal 516 as above; night x 2 beats peak x 1.5: +516 (not x 3), total 10.32.
    assert lines(body) == [("base", 250), ("distance", 266), ("time", 0), ("night", 516)]
    assert body["fee"]["total_minor"] == 1032
    assert (body["fee"]["night"], body["fee"]["peak"]) == (True, True)
    assert "only the larger counts" in body["fee"]["breakdown"][-1]["detail"]
    assert body["tariff_version"] == "night-2026"


async def test_default_city_quotes_nothing(quoting: RunningHub):
    body = await quote(quoting, origin=point(east(3000)), destination=point(HOME))
    assert body["city"] == "default" and body["tariff_version"] == "free"
    assert (body["fee"]["total_minor"], body["fee"]["currency"]) == (0, "XXX")


async def test_quote_for_a_booking_from_the_technicians_last_fix(quoting: RunningHub, osrm):
    await put_city(quoting, "berlin", BASE_TARIFF)
    await quoting.create_booking(id="bk", city="berlin", technician_id="assigned-one")
    at = east(2500.0)
    await go_online(quoting, "tech-q", at)
    body = await quote(quoting, booking_id="bk", technician_id="tech-q")
    assert (body["booking_id"], body["technician_id"], body["city"]) == ("bk", "tech-q", "berlin")
    assert body["origin"] == point(at) and body["destination"] == point(HOME)
    assert body["fee"]["total_minor"] == 516  # base 250 + distance 266, no window
    # No technician named: the booking's own, who has no position yet.
    unplaced = await quoting.post("/v1/quotes/travel", {"booking_id": "bk"})
    assert (unplaced.status_code, unplaced.json()["code"]) == (409, "conflict")
    assert "assigned-one" in unplaced.json()["message"]
    # A booking with nobody on it and no origin: nothing to start from.
    await quoting.create_booking(id="lonely", city="berlin")
    nobody = await quoting.post("/v1/quotes/travel", {"booking_id": "lonely"})
    assert (nobody.status_code, nobody.json()["code"]) == (422, "invalid_field")
    given = await quote(quoting, booking_id="lonely", origin=point(east(100.0)))
    assert given["booking_id"] == "lonely" and "technician_id" not in given


# ---------------------------------------------------------------------------- accepting


async def test_a_booking_carries_its_quote_until_the_quote_expires(quoting: RunningHub):
    await put_city(quoting, "berlin", BASE_TARIFF)
    q = await quote(quoting, city="berlin", origin=point(east(3000)), destination=point(HOME))
    clock = quoting.clock
    assert isinstance(clock, ShiftedClock)
    clock.advance(QUOTE_TTL_S - 1.0)  # 299 s on: still good
    carried = await quoting.create_booking(id="b-ok", city="berlin", quote_id=q["id"])
    assert (carried["quote_id"], carried["quoted_distance_m"]) == (q["id"], 4321.5)
    clock.advance(2.0)  # 301 s on: expired
    async with quoting.client() as http:
        late = await http.post(
            "/v1/bookings",
            json={
                "id": "b-late",
                "customer_id": "c",
                "city": "berlin",
                "destination": point(HOME),
                "quote_id": q["id"],
            },
        )
        assert (late.status_code, late.json()["code"]) == (409, "quote_expired")
        assert (await http.get("/v1/bookings/b-late")).status_code == 404
        # Still readable for what it said.
        assert (await http.get(f"/v1/quotes/{q['id']}")).status_code == 200
    # Attaching the expired quote after creation is refused the same way.
    await quoting.create_booking(id="b-after", city="berlin")
    attach = await quoting.post("/v1/bookings/b-after/quote", {"quote_id": q["id"]})
    assert (attach.status_code, attach.json()["code"]) == (409, "quote_expired")


async def test_quote_attached_after_creation_and_the_refusals(quoting: RunningHub):
    await put_city(quoting, "berlin", BASE_TARIFF)
    await put_city(quoting, "hamburg", BASE_TARIFF)
    await quoting.create_booking(id="b-1", city="berlin")
    q = await quote(quoting, booking_id="b-1", origin=point(east(3000)))
    attached = await quoting.post("/v1/bookings/b-1/quote", {"quote_id": q["id"]})
    assert attached.status_code == 200, attached.text
    assert (attached.json()["quote_id"], attached.json()["quoted_distance_m"]) == (q["id"], 4321.5)
    async with quoting.client() as http:
        stored = (await http.get("/v1/bookings/b-1")).json()
    assert (stored["quote_id"], stored["quoted_distance_m"]) == (q["id"], 4321.5)
    assert stored["status"] == "requested"

    async def refused(body: dict[str, Any], booking: dict[str, Any]) -> tuple[int, str, str]:
        async with quoting.client() as http:
            answer = await http.post(
                "/v1/bookings", json={"customer_id": "c", "id": "b-x", **booking, **body}
            )
            assert (await http.get("/v1/bookings/b-x")).status_code == 404
        return answer.status_code, answer.json()["code"], answer.json()["message"]

    berlin_home = {"city": "berlin", "destination": point(HOME)}
    status, code, _ = await refused({"quote_id": "never-issued"}, berlin_home)
    assert (status, code) == (422, "unknown_quote")
    # A quote made for b-1 is b-1's: another booking at the same door may not carry it.
    status, code, message = await refused({"quote_id": q["id"]}, berlin_home)
    assert (status, code) == (422, "invalid_field") and "made for booking b-1" in message
    # A quote for a trip not booked yet, to HOME; a booking 500 m away is another address.
    trip = await quote(quoting, city="berlin", origin=point(east(3000)), destination=point(HOME))
    status, code, message = await refused(
        {"quote_id": trip["id"]}, {"city": "berlin", "destination": point(east(500.0))}
    )
    assert (status, code) == (422, "invalid_field") and "500 m" in message
    status, code, message = await refused(
        {"quote_id": trip["id"]}, {"city": "hamburg", "destination": point(HOME)}
    )
    assert (status, code) == (422, "invalid_field") and "hamburg" in message
    # 50 m away is the same building's other door: accepted.
    near = await quoting.create_booking(
        id="b-near", city="berlin", destination=point(east(50.0)), quote_id=trip["id"]
    )
    assert near["quote_id"] == trip["id"]

    unknown = await quoting.post("/v1/bookings/b-1/quote", {"quote_id": "never-issued"})
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_quote")
    missing = await quoting.post("/v1/bookings/nope/quote", {"quote_id": q["id"]})
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    for bad in ({}, {"quote_id": ""}, {"quote_id": "a b"}, {"quote_id": 7}, {"x": 1}):
        answer = await quoting.post("/v1/bookings/b-1/quote", bad)
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid_field"), bad
    assert (await quoting.post("/v1/bookings/b-1/cancel")).status_code == 200
    final = await quoting.post("/v1/bookings/b-1/quote", {"quote_id": q["id"]})
    assert (final.status_code, final.json()["code"]) == (409, "conflict")


# ---------------------------------------------------------------------------- driven


async def test_distance_driven_to_the_door_is_recorded_beside_the_quote(quoting: RunningHub):
    await put_city(quoting, "berlin", BASE_TARIFF)
    q = await quote(quoting, city="berlin", origin=point(east(2100)), destination=point(HOME))
    await quoting.create_booking(
        id="visit", city="berlin", technician_id="driver", quote_id=q["id"]
    )
    tech = await quoting.connect(
        "/v1/ws/technician", await quoting.token("technician", "driver", ttl=3600)
    )
    await receive_until(tech, "ack")
    assert (await quoting.post("/v1/bookings/visit/en_route")).status_code == 200
    set_off = quoting.hub.clock()
    clock = quoting.clock
    assert isinstance(clock, ShiftedClock)
    clock.advance(300.0)
    # 2016 m west at 12 m/s, 1 Hz, from 2100 m east of the door to 84 m east of it
    # (outside the 75 m fence: the check-in is the platform's, below).
    track = [(set_off + 1 + i, east(2100.0 - 12.0 * i)) for i in range(169)]
    await send_fixes(tech, track, 1)
    arrived = await quoting.post("/v1/bookings/visit/arrive")
    assert arrived.status_code == 200, arrived.text
    booking = await booking_after_check_in(quoting, "visit")
    assert booking["status"] == "arrived"
    assert (booking["quote_id"], booking["quoted_distance_m"]) == (q["id"], 4321.5)
    # A step counts once 30 m from the last counted point (GPS jitter is not driving):
    # every third fix, 56 steps of 36 m = 2016 m, all of it.
    assert booking["driven_m"] == pytest.approx(2016.0, rel=0.10)
    assert booking["driven_m"] == pytest.approx(2016.0, abs=1.0)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{", 400, "invalid_json"),
        (b"[]", 422, "invalid_field"),
        (b"{}", 422, "invalid_field"),
        (b'{"destination": {"lat": 52.5, "lon": 13.4}}', 422, "invalid_field"),  # no origin
        (b'{"origin": {"lat": 52.5, "lon": 13.4}}', 422, "invalid_field"),  # no destination
        (
            b'{"origin": {"lat": 52.5, "lon": 13.4}, "destination": {"lat": 95, "lon": 13.4}}',
            422,
            "out_of_range",
        ),
        (
            b'{"origin": {"lat": 52.5, "lon": 190}, "destination": {"lat": 52.5, "lon": 13.4}}',
            422,
            "out_of_range",
        ),
        (
            b'{"origin": {"lat": "x", "lon": 13.4}, "destination": {"lat": 52.5, "lon": 13.4}}',
            422,
            "invalid_field",
        ),
        (
            b'{"origin": {"lat": 52.5}, "destination": {"lat": 52.5, "lon": 13.4}}',
            422,
            "invalid_field",
        ),
        (
            b'{"city": "atlantis", "origin": {"lat": 52.5, "lon": 13.4},'
            b' "destination": {"lat": 52.5, "lon": 13.4}}',
            422,
            "unknown_city",
        ),
        (b'{"booking_id": "nope", "origin": {"lat": 52.5, "lon": 13.4}}', 404, "not_found"),
        (b'{"booking_id": "b", "city": "default"}', 422, "invalid_field"),
        (b'{"booking_id": "b", "destination": {"lat": 52.5, "lon": 13.4}}', 422, "invalid_field"),
        (b'{"technician_id": "ghost", "destination": {"lat": 52.5, "lon": 13.4}}', 409, "conflict"),
        (b'{"price": 1}', 422, "invalid_field"),
        (b'{"booking_id": "a b"}', 422, "invalid_field"),
    ],
)
async def test_malformed_quote_requests_are_4xx_json_and_store_nothing(
    quoting: RunningHub, raw: bytes, status: int, code: str
):
    await quoting.create_booking(id="b")
    async with quoting.client() as http:
        answer = await http.post(
            "/v1/quotes/travel", content=raw, headers={"content-type": "application/json"}
        )
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert await quoting.hub.store.list_documents("quotes") == {}


async def test_unknown_quote_reads_404(quoting: RunningHub):
    async with quoting.client() as http:
        answer = await http.get("/v1/quotes/nope")
    assert (answer.status_code, answer.json()["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"quote_id": "q", "city": "atlantis"}, 422, "unknown_city"),
        ({"window": {"start_t": 2_000_000_000, "end_t": 1_999_999_000}}, 422, "out_of_range"),
        ({"window": {"start_t": "soon", "end_t": 1}}, 422, "invalid_field"),
        ({"window": {"start_t": 2_000_000_000}}, 422, "invalid_field"),
        ({"preferred_technician_id": "a b"}, 422, "invalid_field"),
        ({"city": ""}, 422, "invalid_field"),
        ({"quote_id": 5}, 422, "invalid_field"),
    ],
)
async def test_malformed_booking_terms_are_refused_and_store_nothing(
    quoting: RunningHub, body: dict[str, Any], status: int, code: str
):
    async with quoting.client() as http:
        answer = await http.post(
            "/v1/bookings",
            json={"id": "t-1", "customer_id": "c", "destination": point(HOME), **body},
        )
        after = await http.get("/v1/bookings/t-1")
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert after.status_code == 404


async def _drive_in_with_presence(quoting: RunningHub, booking_id: str, batch: int) -> float:
    """En route, then 1 Hz fixes 1990 m west at 10 m/s to a spot 10 m from the door, then
    five indoor minutes (30 m accuracy) that the presence detector checks in on, sent in
    frames of ``batch`` points. Returns the metres from the start to the first fix inside
    the 75 m fence (where check-in stamps the arrival)."""
    await quoting.create_booking(id=booking_id, technician_id="driver")
    tech = await quoting.connect(
        "/v1/ws/technician", await quoting.token("technician", "driver", ttl=3600)
    )
    await receive_until(tech, "ack")
    assert (await quoting.post(f"/v1/bookings/{booking_id}/en_route")).status_code == 200
    set_off = quoting.hub.clock()
    clock = quoting.clock
    assert isinstance(clock, ShiftedClock)
    clock.advance(900.0)
    approach = [(set_off + 1 + i, east(2000.0 - 10.0 * i), 8.0) for i in range(200)]
    indoors = [(set_off + 201 + 5 * i, east(10.0), 30.0) for i in range(60)]
    seq = 1
    points = approach + indoors
    for start in range(0, len(points), batch):
        chunk = []
        for t, (lat, lon), acc in points[start : start + batch]:
            chunk.append({"seq": seq, "t": t, "lat": lat, "lon": lon, "acc": acc})
            seq += 1
        await tech.send(json.dumps({"type": "batch", "points": chunk}))
        ack = await receive_until(tech, "ack")
        while ack["seq"] < seq - 1:
            ack = await receive_until(tech, "ack")
    # The first fix inside the fence: 2000 - 10 i < 75, i = 193, 70 m from the door.
    return 2000.0 - 70.0


async def test_driven_after_a_check_in_by_the_presence_detector(quoting: RunningHub):
    expected = await _drive_in_with_presence(quoting, "streamed", batch=10)
    booking = await booking_after_check_in(quoting, "streamed")
    assert booking["status"] == "arrived"
    assert booking["driven_m"] == pytest.approx(expected, rel=0.10)


async def test_driven_counts_a_drive_buffered_in_one_frame(
    hub_factory: Callable[..., Any], osrm: FakeOsrm
):
    # The history writes every 0.5 s here (0.05 s by default): the same race every time,
    # where by default the check-in's own store round trips sometimes let the write win.
    slow = await hub_factory(osrm_url=osrm.url, clock=ShiftedClock(), history_flush_interval_s=0.5)
    expected = await _drive_in_with_presence(slow, "buffered", batch=500)
    booking = await booking_after_check_in(slow, "buffered")
    assert booking["status"] == "arrived"
    assert booking["driven_m"] == pytest.approx(expected, rel=0.10)


async def test_a_booking_for_tonight_is_quoted_at_tonights_rate(quoting: RunningHub):
    now = quoting.hub.clock()
    later = now + 7 * 3600.0
    hour = datetime.fromtimestamp(later, BERLIN).hour
    # A night window around the visit's hour, seven hours from now: not now.
    night = {"start": hhmm(hour - 1), "end": hhmm(hour + 1)}
    tariff = {**BASE_TARIFF, "cap": None, "night": night, "night_multiplier": 2.0}
    await put_city(quoting, "berlin", tariff)
    window = {"start_t": later, "end_t": later + 3600.0}
    await quoting.create_booking(id="tonight", city="berlin", window=window)
    await quoting.create_booking(id="asap", city="berlin")
    booked = await quote(quoting, booking_id="tonight", origin=point(east(3000)))
    # base 250 + distance 266 = 516, night x 2: +516.
    assert lines(booked) == [("base", 250), ("distance", 266), ("time", 0), ("night", 516)]
    assert booked["trip_t"] == later and booked["fee"]["night"] is True
    local = datetime.fromisoformat(booked["fee"]["local_time"])
    assert local.timestamp() == pytest.approx(later, abs=1e-6)
    # Expiry still counts from now: the price holds five minutes, not until tonight.
    assert booked["expires_at"] - booked["created_t"] == pytest.approx(QUOTE_TTL_S, abs=1e-6)
    # The same trip with no window, or an ad hoc one, is priced now: no night line.
    asap = await quote(quoting, booking_id="asap", origin=point(east(3000)))
    adhoc = await quote(quoting, city="berlin", origin=point(east(3000)), destination=point(HOME))
    for body in (asap, adhoc):
        assert lines(body) == [("base", 250), ("distance", 266), ("time", 0)]
        assert body["trip_t"] == body["created_t"]


# ---------------------------------------------------------------------------- retention


async def test_expired_quotes_are_deleted_a_day_after_expiry(quoting: RunningHub):
    q = await quote(quoting, origin=point(east(3000)), destination=point(HOME))
    day_after = q["expires_at"] + 24 * 3600.0 + 60.0
    await quoting.hub.retention.run_once(now=day_after)
    async with quoting.client() as http:
        answer = await http.get(f"/v1/quotes/{q['id']}")
    assert answer.status_code == 404


async def test_erasing_a_technician_removes_their_position_from_quotes(quoting: RunningHub):
    at = east(2500.0)
    await go_online(quoting, "tech-e", at)
    q = await quote(quoting, technician_id="tech-e", destination=point(HOME))
    assert q["origin"] == point(at)
    async with quoting.client() as http:
        erased = await http.delete("/v1/people/technician/tech-e/data")
        assert erased.status_code == 200, erased.text
        answer = await http.get(f"/v1/quotes/{q['id']}")
    assert answer.status_code == 404 or answer.json()["origin"] != point(at)


async def test_a_stale_technician_position_is_no_origin(quoting: RunningHub):
    at = east(2500.0)
    await go_online(quoting, "tech-s", at)
    fresh = await quote(quoting, technician_id="tech-s", destination=point(HOME))
    assert fresh["origin"] == point(at)
    clock = quoting.clock
    assert isinstance(clock, ShiftedClock)
    clock.advance(15 * 60.0 + 5.0)  # dispatch ranks nobody from a fix over 15 min old
    stale = await quoting.post(
        "/v1/quotes/travel", {"technician_id": "tech-s", "destination": point(HOME)}
    )
    assert (stale.status_code, stale.json()["code"]) == (409, "conflict")
    assert "old" in stale.json()["message"]
    given = await quote(
        quoting, technician_id="tech-s", origin=point(east(10.0)), destination=point(HOME)
    )
    assert given["technician_id"] == "tech-s"


async def test_no_track_on_the_way_is_no_driven_distance(quoting: RunningHub):
    await quoting.create_booking(id="silent", technician_id="mute")
    for step in ("en_route", "arrive"):
        assert (await quoting.post(f"/v1/bookings/silent/{step}")).status_code == 200
    booking = await booking_after_check_in(quoting, "silent")
    assert booking["status"] == "arrived" and "driven_m" not in booking
