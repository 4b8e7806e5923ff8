"""Issue 15 over a real hub: cities, technician profiles, dispatch that explains itself,
batch matching, concurrency and the visit ledger.

Every expected number is worked out in the comments from the defaults in
``realtime/dispatch_weights.py`` (ETA x1, 120 s per star below 5, 300 s x (1 - history
score), 90 s per job above the median, 300 s off for the preferred technician) and the
history prior of ``realtime/history_score.py`` (no record scores 0.9, so history_s = 30 s).
Technicians that must compare on everything but one term stand on the same spot: their
ETAs are then equal and the difference in their totals is that one term, exactly.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection

from geofence.geo import destination_point
from realtime.city import City
from tests.conftest import RunningHub, receive_until

HOME = (52.5200, 13.4050)
BERLIN = ZoneInfo("Europe/Berlin")
# The history term of a technician with no record: 300 x (1 - 0.9).
PRIOR_HISTORY_S = 30.0


# ---------------------------------------------------------------------------- helpers


def east(metres: float) -> tuple[float, float]:
    """A point ``metres`` east of HOME (negative: west)."""
    if metres < 0:
        return destination_point(*HOME, 270.0, -metres)
    return destination_point(*HOME, 90.0, metres)


def square(center: tuple[float, float], half_m: float) -> dict[str, Any]:
    corners = []
    for bearing in (45.0, 135.0, 225.0, 315.0):
        lat, lon = destination_point(*center, bearing, half_m * 2**0.5)
        corners.append([lon, lat])
    corners.append(corners[0])
    return {"type": "Polygon", "coordinates": [corners]}


async def put_zone(hub: RunningHub, zone_id: str, half_m: float = 1000.0) -> None:
    area = {
        "type": "Feature",
        "properties": {"kind": "service_area", "name": zone_id},
        "geometry": square(HOME, half_m),
    }
    async with hub.client() as http:
        response = await http.put(f"/v1/zones/{zone_id}", json=area)
    assert response.status_code == 200, response.text


async def put_city(hub: RunningHub, city_id: str, **fields: Any) -> dict[str, Any]:
    body = {"name": city_id.title(), "timezone": "UTC", **fields}
    async with hub.client() as http:
        response = await http.put(f"/v1/cities/{city_id}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def put_profile(hub: RunningHub, technician_id: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("skills", ["plumbing"])
    async with hub.client() as http:
        response = await http.put(f"/v1/technicians/{technician_id}", json=fields)
    assert response.status_code == 200, response.text
    return response.json()


async def go_online(
    hub: RunningHub, technician_id: str, at: tuple[float, float], seq: int = 1
) -> ClientConnection:
    """Connect the technician and send one fix at ``at``, stamped with the hub's clock."""
    tech = await hub.connect(
        "/v1/ws/technician", await hub.token("technician", technician_id, ttl=3600)
    )
    await receive_until(tech, "ack")
    await send_fix(tech, at, seq, hub.hub.clock())
    return tech


async def send_fix(tech: ClientConnection, at: tuple[float, float], seq: int, t: float) -> None:
    fix = {"type": "location", "seq": seq, "t": t, "lat": at[0], "lon": at[1], "acc": 8.0}
    await tech.send(json.dumps(fix))
    ack = await receive_until(tech, "ack")
    while ack["seq"] < seq:
        ack = await receive_until(tech, "ack")


async def dry_run(hub: RunningHub, booking_id: str) -> dict[str, Any]:
    response = await hub.post(f"/v1/bookings/{booking_id}/dispatch?dry_run=1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True
    return body


def by_technician(ranking: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["technician_id"]: entry for entry in ranking}


def assert_total_is_the_sum(entry: dict[str, Any]) -> None:
    parts = entry["components"]
    # Each part and the total are rounded to 0.1 s on their own: five roundings apart.
    assert entry["total_s"] == pytest.approx(sum(parts.values()), abs=0.26)


def hhmm(hour: int) -> str:
    return f"{hour % 24:02d}:00"


async def get_booking(hub: RunningHub, booking_id: str) -> dict[str, Any]:
    async with hub.client() as http:
        response = await http.get(f"/v1/bookings/{booking_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def open_bookings_by_technician(hub: RunningHub, ids: list[str]) -> dict[str, list[str]]:
    held: dict[str, list[str]] = {}
    for booking_id in ids:
        booking = await get_booking(hub, booking_id)
        if booking["status"] == "assigned":
            held.setdefault(booking["technician_id"], []).append(booking_id)
    return held


# ---------------------------------------------------------------------------- 1. cities


async def test_default_city_is_listed_before_any_city_is_configured(hub: RunningHub):
    async with hub.client() as http:
        listed = await http.get("/v1/cities")
        default = await http.get("/v1/cities/default")
    assert listed.status_code == 200
    cities = listed.json()["cities"]
    assert [c["id"] for c in cities] == ["default"]
    assert cities[0]["timezone"] == "UTC" and cities[0]["zone_ids"] == []
    assert cities[0]["tariff"]["version"] == "free" and cities[0]["tariff"]["currency"] == "XXX"
    assert default.status_code == 200 and default.json() == cities[0]


async def test_city_put_then_get_and_listed_beside_default(hub: RunningHub):
    await put_zone(hub, "mitte")
    body = {
        "name": "Berlin",
        "timezone": "Europe/Berlin",
        "zone_ids": ["mitte"],
        "tariff": {"version": "2026-12", "currency": "EUR", "base_fee": 2.5, "per_km": 0.8},
        "dispatch": {"eta": 1.5, "rating_per_star_s": 60.0},
        "escalation": {"contacts_after_s": 60.0},
        "operator_group": "ops-berlin",
        "retention_days": 30,
    }
    async with hub.client() as http:
        put = await http.put("/v1/cities/berlin", json=body)
        got = await http.get("/v1/cities/berlin")
        listed = await http.get("/v1/cities")
    assert put.status_code == 200, put.text
    city = put.json()
    assert city["id"] == "berlin" and city["timezone"] == "Europe/Berlin"
    assert city["zone_ids"] == ["mitte"]
    assert city["tariff"]["base_fee"] == 2.5 and city["tariff"]["per_km"] == 0.8
    # Weights not given keep their defaults.
    defaults = {
        "eta": 1.5,
        "rating_per_star_s": 60.0,
        "history_s": 300.0,
        "fairness_per_job_s": 90.0,
        "preferred_bonus_s": 300.0,
    }
    assert {name: city["dispatch"][name] for name in defaults} == defaults
    assert city["escalation"]["contacts_after_s"] == 60.0
    assert city["operator_group"] == "ops-berlin" and city["retention_days"] == 30
    assert got.status_code == 200 and got.json() == city
    assert [c["id"] for c in listed.json()["cities"]] == ["berlin", "default"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "unknown time zone"),
        ({"timezone": "Europe"}, "unknown time zone"),  # a directory of zones
        ({"timezone": "../../etc/passwd"}, "unknown time zone"),
        ({"timezone": "zone.tab"}, "unknown time zone"),  # a file that is no zone
        ({"zone_ids": ["nowhere"]}, "nowhere not defined"),
        ({"zone_ids": ["mitte", "mitte"]}, "listed twice"),
        ({"colour": "blue"}, "colour"),
        ({"id": "hamburg"}, "is not 'berlin'"),
        ({"name": "  "}, "name"),
        ({"retention_days": 0}, "retention_days"),
        ({"dispatch": {"eta": -1.0}}, "eta"),
        ({"tariff": {"version": "v", "currency": "eur"}}, "currency"),
        ({"escalation": {"contacts_after_s": -5.0}}, "contacts_after_s"),
    ],
)
async def test_bad_city_is_refused_with_a_code_and_not_stored(
    hub: RunningHub, change: dict[str, Any], words: str
):
    await put_zone(hub, "mitte")
    body = {"name": "Berlin", "timezone": "Europe/Berlin", **change}
    async with hub.client() as http:
        response = await http.put("/v1/cities/berlin", json=body)
        after = await http.get("/v1/cities/berlin")
        listed = await http.get("/v1/cities")
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_field"
    assert words in response.json()["message"]
    assert after.status_code == 404 and after.json()["code"] == "not_found"
    assert [c["id"] for c in listed.json()["cities"]] == ["default"]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{", 400, "invalid_json"),
        (b"[]", 422, "invalid_field"),
        (b'"berlin"', 422, "invalid_field"),
        (b'{"name": "B"}', 422, "invalid_field"),  # no timezone
        (b'{"name": 5, "timezone": "UTC"}', 422, "invalid_field"),
        (b'{"name": "B", "timezone": "UTC", "zone_ids": "mitte"}', 422, "invalid_field"),
        (b'{"name": "B", "timezone": "UTC", "tariff": {"currency": "EUR"}}', 422, "invalid_field"),
    ],
)
async def test_malformed_city_bodies_are_4xx_json(
    hub: RunningHub, raw: bytes, status: int, code: str
):
    async with hub.client() as http:
        response = await http.put(
            "/v1/cities/berlin", content=raw, headers={"content-type": "application/json"}
        )
        after = await http.get("/v1/cities/berlin")
        bad_id = await http.put("/v1/cities/bad%20id", json={"name": "B", "timezone": "UTC"})
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert after.status_code == 404
    assert (bad_id.status_code, bad_id.json()["code"]) == (422, "invalid_field")


async def test_a_city_put_on_one_hub_is_seen_by_the_other(redis_pair: list[RunningHub]):
    first, second = redis_pair
    await put_city(first, "berlin", timezone="Europe/Berlin")
    async with second.client() as http:
        for _ in range(100):
            got = await http.get("/v1/cities/berlin")
            if got.status_code == 200:
                break
            await asyncio.sleep(0.05)
    assert got.status_code == 200, got.text
    assert got.json()["timezone"] == "Europe/Berlin"
    # And the second hub lets a booking name it at once.
    booking = await second.create_booking(id="b-1", city="berlin")
    assert booking["city"] == "berlin"


async def test_a_citys_retention_days_apply_to_its_bookings(hub: RunningHub):
    await put_city(hub, "brief", retention_days=1)
    await hub.create_booking(id="short-lived", city="brief")
    assert (await hub.post("/v1/bookings/short-lived/cancel")).status_code == 200
    await hub.hub.retention.run_once(now=hub.hub.clock() + 2 * 86400.0)
    assert "redacted_t" in await get_booking(hub, "short-lived")


# ---------------------------------------------------------------------------- 2. profiles


async def test_technician_profile_with_rating_city_and_shifts(hub: RunningHub):
    await put_city(hub, "berlin", timezone="Europe/Berlin")
    shifts = [{"start": "22:00", "end": "06:00", "days": [4]}, {"start": "08:00", "end": "16:00"}]
    put = await put_profile(hub, "tech-1", rating=4.5, city="berlin", shifts=shifts)
    assert put == {
        "id": "tech-1",
        "skills": ["plumbing"],
        "rating": 4.5,
        "city": "berlin",
        "shifts": [
            {"start": "22:00", "end": "06:00", "days": [4]},
            {"start": "08:00", "end": "16:00", "days": [0, 1, 2, 3, 4, 5, 6]},
        ],
    }
    async with hub.client() as http:
        got = (await http.get("/v1/technicians/tech-1")).json()
    assert (got["rating"], got["city"], got["shifts"]) == (4.5, "berlin", put["shifts"])
    assert got["online"] is False and got["position"] is None


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"city": "atlantis"}, "unknown_city", "atlantis"),
        ({"rating": 6}, "out_of_range", "5"),
        ({"rating": -0.5}, "out_of_range", "0"),
        ({"rating": "five"}, "invalid_field", "rating"),
        ({"shifts": [{"start": "25:00", "end": "06:00"}]}, "invalid_field", "25:00"),
        ({"shifts": [{"start": "08:00", "end": "08:00"}]}, "invalid_field", "ambiguous"),
        ({"shifts": [{"start": "08:00", "end": "16:00", "days": [7]}]}, "invalid_field", "7"),
        ({"shifts": [{"start": "08:00", "end": "16:00", "days": []}]}, "invalid_field", "day"),
        ({"shifts": [{"start": "08:00"}]}, "invalid_field", "end"),
        ({"shifts": [{"start": "08:00", "end": "16:00", "x": 1}]}, "invalid_field", "x"),
        ({"shifts": "always"}, "invalid_field", "shifts"),
        ({"skills": ["bad skill"]}, "invalid_field", "skills"),
    ],
)
async def test_bad_profiles_are_refused_and_not_stored(
    hub: RunningHub, body: dict[str, Any], code: str, words: str
):
    async with hub.client() as http:
        response = await http.put("/v1/technicians/tech-1", json=body)
        after = await http.get("/v1/technicians/tech-1")
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert words in response.json()["message"]
    assert after.status_code == 404


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{", 400, "invalid_json"),
        (b"[]", 422, "invalid_field"),
        (b"null", 422, "invalid_field"),
        (b'{"rating": 1e999}', 422, "out_of_range"),  # beyond a float
        (b'{"rating": NaN}', 400, "invalid_json"),
        (b'{"city": null, "shifts": null}', 422, "invalid_field"),
    ],
)
async def test_malformed_profile_bodies_are_4xx_json(
    hub: RunningHub, raw: bytes, status: int, code: str
):
    async with hub.client() as http:
        answer = await http.put(
            "/v1/technicians/tech-1", content=raw, headers={"content-type": "application/json"}
        )
        after = await http.get("/v1/technicians/tech-1")
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert after.status_code == 404


# ---------------------------------------------------------------------------- 3. dry run


async def test_dry_run_filters_scores_and_explains_then_dispatch_assigns_the_best(
    hub: RunningHub,
):
    await put_zone(hub, "mitte")  # a 2 km square around HOME
    await put_city(hub, "berlin", timezone="Europe/Berlin", zone_ids=["mitte"])
    await put_city(hub, "hamburg", timezone="Europe/Berlin")
    now = hub.hub.clock()
    local_hour = datetime.fromtimestamp(now, BERLIN).hour
    utc_hour = datetime.fromtimestamp(now, UTC).hour
    # On shift: an hour before to two after now, Berlin time.
    on_duty = [{"start": hhmm(local_hour - 1), "end": hhmm(local_hour + 2)}]
    # Off shift: covers now on a UTC clock but ends (Berlin is UTC+1 in December) before the
    # hour now shows in Berlin, so it catches a hub reading shifts in UTC.
    utc_trap = [{"start": hhmm(utc_hour - 1), "end": hhmm(utc_hour + 1)}]
    spot = east(400.0)
    profiles = {
        "ace": {"rating": 5.0, "city": "berlin", "shifts": on_duty},
        "bee": {"rating": 4.0, "city": "berlin"},  # no shifts: always on shift
        "pref": {"rating": 3.0, "city": "berlin"},
        "night": {"rating": 5.0, "city": "berlin", "shifts": utc_trap},
        "hamburger": {"rating": 5.0, "city": "hamburg"},
        "outsider": {"rating": 5.0, "city": "berlin"},
        "novice": {"rating": 5.0, "city": "berlin", "skills": []},
    }
    for technician_id, fields in profiles.items():
        await put_profile(hub, technician_id, **fields)
        await go_online(hub, technician_id, east(3000.0) if technician_id == "outsider" else spot)
    await hub.create_booking(
        id="job",
        city="berlin",
        skills=["plumbing"],
        preferred_technician_id="pref",
        destination={"lat": HOME[0], "lon": HOME[1]},
    )

    dry = await dry_run(hub, "job")
    assert dry["booking"]["status"] == "requested" and "technician_id" not in dry["booking"]
    assert dry["excluded"] == [
        {"technician_id": "hamburger", "reason": "out_of_area"},  # another city
        {"technician_id": "night", "reason": "off_shift"},
        {"technician_id": "novice", "reason": "skills"},
        {"technician_id": "outsider", "reason": "out_of_area"},  # outside the zone
    ]
    ranking = dry["ranking"]
    # Same spot, same ETA: the totals differ by rating and preference alone.
    #   pref: eta + 120 x 2 + 30 - 300 = eta - 30
    #   ace:  eta + 0       + 30       = eta + 30
    #   bee:  eta + 120 x 1 + 30       = eta + 150
    assert [r["technician_id"] for r in ranking] == ["pref", "ace", "bee"]
    eta = ranking[0]["eta_s"]
    assert eta > 0 and all(r["eta_s"] == eta for r in ranking)
    assert ranking[0]["distance_m"] >= 399.0  # at least the straight line
    expected = {
        "pref": {"rating_s": 240.0, "preferred_s": -300.0},
        "ace": {"rating_s": 0.0, "preferred_s": 0.0},
        "bee": {"rating_s": 120.0, "preferred_s": 0.0},
    }
    for entry in ranking:
        parts = entry["components"]
        assert parts == {
            "eta_s": eta,
            "history_s": PRIOR_HISTORY_S,
            "fairness_s": 0.0,
            **expected[entry["technician_id"]],
        }
        assert_total_is_the_sum(entry)
        assert entry["position_age_s"] < 10.0
    totals = by_technician(ranking)
    assert totals["ace"]["total_s"] - totals["pref"]["total_s"] == pytest.approx(60.0, abs=0.11)
    assert totals["bee"]["total_s"] - totals["ace"]["total_s"] == pytest.approx(120.0, abs=0.11)

    done = await hub.post("/v1/bookings/job/dispatch")
    assert done.status_code == 200, done.text
    assert done.json()["dry_run"] is False
    assert done.json()["booking"]["technician_id"] == "pref"
    stored = await get_booking(hub, "job")
    assert (stored["status"], stored["technician_id"]) == ("assigned", "pref")
    assign = [e for e in stored["events"] if e["event"] == "assign"]
    assert len(assign) == 1 and "#1 of 3" in assign[0]["cause"]


async def test_city_weights_override_the_defaults(hub: RunningHub):
    weights = {
        "eta": 2.0,
        "rating_per_star_s": 60.0,
        "history_s": 500.0,
        "fairness_per_job_s": 0.0,
        "preferred_bonus_s": 100.0,
    }
    await put_city(hub, "tuned", dispatch=weights)
    spot = east(700.0)
    for technician_id, rating in (("five", 5.0), ("three", 3.0)):
        await put_profile(hub, technician_id, rating=rating, city="tuned")
        await go_online(hub, technician_id, spot)
    await hub.create_booking(id="tuned-job", city="tuned", preferred_technician_id="three")
    # Default weights, the same two: three = eta + 240 + 30 - 300 = eta - 30 beats
    # five = eta + 30. Tuned: five = 2 eta + 0 + 500 x 0.1 = 2 eta + 50;
    # three = 2 eta + 60 x 2 + 50 - 100 = 2 eta + 70: five wins.
    ranking = (await dry_run(hub, "tuned-job"))["ranking"]
    assert [r["technician_id"] for r in ranking] == ["five", "three"]
    five, three = ranking
    assert five["eta_s"] == three["eta_s"] > 0
    for entry in ranking:
        assert entry["components"]["eta_s"] == pytest.approx(2.0 * entry["eta_s"], abs=0.11)
        assert entry["components"]["history_s"] == 50.0
        assert entry["components"]["fairness_s"] == 0.0
        assert_total_is_the_sum(entry)
    assert (five["components"]["rating_s"], five["components"]["preferred_s"]) == (0.0, 0.0)
    assert (three["components"]["rating_s"], three["components"]["preferred_s"]) == (120.0, -100.0)
    assert three["total_s"] - five["total_s"] == pytest.approx(20.0, abs=0.11)

    done = await hub.post("/v1/bookings/tuned-job/dispatch")
    assert done.json()["booking"]["technician_id"] == "five"


async def test_unrated_technician_counts_as_four_stars_and_nearer_ranks_first(hub: RunningHub):
    await put_profile(hub, "unrated")
    await put_profile(hub, "near", rating=4.0)
    await put_profile(hub, "far", rating=4.0)
    await go_online(hub, "unrated", east(500.0))
    await go_online(hub, "near", east(500.0))
    await go_online(hub, "far", east(2500.0))
    await hub.create_booking(id="j")
    ranking = by_technician((await dry_run(hub, "j"))["ranking"])
    assert ranking["unrated"]["components"]["rating_s"] == 120.0
    assert ranking["unrated"]["total_s"] == ranking["near"]["total_s"]
    assert ranking["far"]["eta_s"] > ranking["near"]["eta_s"]
    assert ranking["far"]["distance_m"] > ranking["near"]["distance_m"]


async def test_dispatch_of_unknown_or_assigned_booking(hub: RunningHub):
    missing = await hub.post("/v1/bookings/nope/dispatch?dry_run=1")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    await hub.create_booking(id="j")
    nobody = await hub.post("/v1/bookings/j/dispatch")
    assert (nobody.status_code, nobody.json()["code"]) == (409, "no_technician_available")
    assert (await get_booking(hub, "j"))["status"] == "requested"
    dry_nobody = await dry_run(hub, "j")
    assert (dry_nobody["ranking"], dry_nobody["excluded"]) == ([], [])


async def test_on_shift_is_judged_at_the_start_of_the_promised_window(hub: RunningHub):
    await put_city(hub, "later", timezone="Europe/Berlin")
    now = hub.hub.clock()
    start = now + 6 * 3600.0
    hour_now = datetime.fromtimestamp(now, BERLIN).hour
    hour_then = datetime.fromtimestamp(start, BERLIN).hour
    # Three-hour shifts: one around now, one around the window's start six hours on.
    await put_profile(
        hub,
        "now-shift",
        city="later",
        shifts=[{"start": hhmm(hour_now - 1), "end": hhmm(hour_now + 2)}],
    )
    await put_profile(
        hub,
        "then-shift",
        city="later",
        shifts=[{"start": hhmm(hour_then - 1), "end": hhmm(hour_then + 2)}],
    )
    for technician_id in ("now-shift", "then-shift"):
        await go_online(hub, technician_id, east(400.0))
    await hub.create_booking(id="asap", city="later")
    await hub.create_booking(
        id="booked", city="later", window={"start_t": start, "end_t": start + 7200.0}
    )
    asap = await dry_run(hub, "asap")
    assert [r["technician_id"] for r in asap["ranking"]] == ["now-shift"]
    assert asap["excluded"] == [{"technician_id": "then-shift", "reason": "off_shift"}]
    booked = await dry_run(hub, "booked")
    assert [r["technician_id"] for r in booked["ranking"]] == ["then-shift"]
    assert booked["excluded"] == [{"technician_id": "now-shift", "reason": "off_shift"}]
    assert booked["booking"]["window_start_t"] == start


async def test_erasing_a_technician_erases_their_visit_ledger(hub: RunningHub):
    await _hold_and_end(hub, "done", "gone", "completed")
    assert await hub.hub.store.get_document("visits", "gone") is not None
    async with hub.client() as http:
        erased = await http.delete("/v1/people/technician/gone/data")
    assert erased.status_code == 200, erased.text
    assert await hub.hub.store.get_document("visits", "gone") is None


# ---------------------------------------------------------------------------- 4. concurrency


async def test_two_concurrent_dispatches_for_one_technician(hub: RunningHub):
    await put_city(hub, "solo")
    await put_profile(hub, "only", city="solo")
    await go_online(hub, "only", east(300.0))
    for booking_id in ("c-1", "c-2"):
        await hub.create_booking(id=booking_id, city="solo", skills=["plumbing"])
    answers = await asyncio.gather(
        hub.post("/v1/bookings/c-1/dispatch"), hub.post("/v1/bookings/c-2/dispatch")
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.json()["code"] == "no_technician_available"
    assert await open_bookings_by_technician(hub, ["c-1", "c-2"]) in (
        {"only": ["c-1"]},
        {"only": ["c-2"]},
    )


async def test_a_batch_beside_a_single_dispatch_never_doubles_a_technician(hub: RunningHub):
    await put_city(hub, "duo")
    for technician_id, metres in (("x", 300.0), ("y", 900.0)):
        await put_profile(hub, technician_id, city="duo")
        await go_online(hub, technician_id, east(metres))
    for round_ in range(3):
        ids = [f"r{round_}-{n}" for n in range(3)]
        for booking_id in ids:
            await hub.create_booking(id=booking_id, city="duo")
        batch, single = await asyncio.gather(
            hub.post("/v1/dispatch/batch", {"city": "duo", "booking_ids": ids[:2]}),
            hub.post(f"/v1/bookings/{ids[2]}/dispatch"),
        )
        assert batch.status_code == 200, batch.text
        assert single.status_code in (200, 409), single.text
        held = await open_bookings_by_technician(hub, ids)
        # Two technicians, three bookings: both busy, each with exactly one.
        assert sorted(held) == ["x", "y"] and all(len(v) == 1 for v in held.values()), held
        reported = {a["booking_id"]: a["technician_id"] for a in batch.json()["assigned"]}
        if single.status_code == 200:
            reported[ids[2]] = single.json()["booking"]["technician_id"]
        assert reported == {b[0]: t for t, b in held.items()}
        for booking_id in ids:  # free them for the next round
            if (await get_booking(hub, booking_id))["status"] == "assigned":
                cancel = await hub.post(f"/v1/bookings/{booking_id}/cancel", {"by": "platform"})
                assert cancel.status_code == 200


async def test_a_batch_on_one_hub_and_a_dispatch_on_another(redis_pair: list[RunningHub]):
    first, second = redis_pair
    await put_city(first, "pair")
    for technician_id, metres in (("x", 300.0), ("y", 900.0)):
        await put_profile(first, technician_id, city="pair")
        await go_online(first, technician_id, east(metres))
    ids = ["p-0", "p-1", "p-2"]
    for booking_id in ids:
        await first.create_booking(id=booking_id, city="pair")
    # The second hub sees both technicians through the shared roster (every fleet interval).
    for _ in range(100):
        ranking = (await dry_run(second, "p-2"))["ranking"]
        if len(ranking) == 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(r["technician_id"] for r in ranking) == ["x", "y"]
    batch, single = await asyncio.gather(
        first.post("/v1/dispatch/batch", {"city": "pair", "booking_ids": ids[:2]}),
        second.post("/v1/bookings/p-2/dispatch"),
    )
    assert batch.status_code == 200 and single.status_code in (200, 409), single.text
    held = await open_bookings_by_technician(first, ids)
    assert sorted(held) == ["x", "y"] and all(len(v) == 1 for v in held.values()), held


# ---------------------------------------------------------------------------- 5. batch


async def test_batch_beats_one_at_a_time_in_the_textbook_case(hub: RunningHub):
    """On a line: Y(-1500) A(0) X(+1000) B(+3000). One at a time, A (older) takes its
    nearest X (1000 m) and leaves B with Y (4500 m): 5500 m. Together: A-Y 1500 m and B-X
    2000 m: 3500 m."""
    await put_city(hub, "line")
    for technician_id, metres in (("x", 1000.0), ("y", -1500.0)):
        await put_profile(hub, technician_id, city="line", rating=5.0)
        await go_online(hub, technician_id, east(metres))
    a, b = east(0.0), east(3000.0)
    await hub.create_booking(id="a", city="line", destination={"lat": a[0], "lon": a[1]})
    await hub.create_booking(id="b", city="line", destination={"lat": b[0], "lon": b[1]})
    await hub.create_booking(id="roof", city="line", skills=["roofing"])  # nobody has it
    single_a = by_technician((await dry_run(hub, "a"))["ranking"])
    single_b = by_technician((await dry_run(hub, "b"))["ranking"])
    assert single_a["x"]["total_s"] < single_a["y"]["total_s"]  # A alone would take X

    dry = await hub.post("/v1/dispatch/batch?dry_run=1", {"city": "line"})
    assert dry.status_code == 200, dry.text
    plan = dry.json()
    assert (plan["dry_run"], plan["city"]) == (True, "line")
    pairs = [(p["booking_id"], p["technician_id"]) for p in plan["assigned"]]
    assert pairs == [("a", "y"), ("b", "x")]
    assert plan["unassigned"] == [{"booking_id": "roof", "reason": "no_feasible_technician"}]
    # The batch's entries are the single dispatch's scores of the same pairs.
    assert plan["assigned"][0]["total_s"] == single_a["y"]["total_s"]
    assert plan["assigned"][1]["total_s"] == single_b["x"]["total_s"]
    # Each total is ETA + 0 (five stars) + 30 (history prior).
    for entry in plan["assigned"]:
        assert entry["components"]["rating_s"] == 0.0
        assert entry["components"]["history_s"] == PRIOR_HISTORY_S
    together = single_a["y"]["total_s"] + single_b["x"]["total_s"]
    one_at_a_time = single_a["x"]["total_s"] + single_b["y"]["total_s"]
    assert plan["total_s"] == pytest.approx(together, abs=0.2)
    assert plan["one_at_a_time_total_s"] == pytest.approx(one_at_a_time, abs=0.2)
    assert plan["total_s"] < plan["one_at_a_time_total_s"]
    for booking_id in ("a", "b", "roof"):
        assert (await get_booking(hub, booking_id))["status"] == "requested"

    done = await hub.post("/v1/dispatch/batch", {"city": "line"})
    assert done.status_code == 200, done.text
    assert done.json()["dry_run"] is False
    assert [(p["booking_id"], p["technician_id"]) for p in done.json()["assigned"]] == pairs
    assert (await get_booking(hub, "a"))["technician_id"] == "y"
    assert (await get_booking(hub, "b"))["technician_id"] == "x"
    assert (await get_booking(hub, "roof"))["status"] == "requested"
    # Nothing waits that anyone can take now: a second batch assigns nothing.
    again = (await hub.post("/v1/dispatch/batch", {"city": "line"})).json()
    assert again["assigned"] == [] and again["total_s"] == 0.0
    assert again["unassigned"] == [{"booking_id": "roof", "reason": "no_feasible_technician"}]


async def test_batch_of_named_bookings_checks_their_city(hub: RunningHub):
    await put_city(hub, "north")
    await put_city(hub, "south")
    await hub.create_booking(id="n-1", city="north")
    await hub.create_booking(id="s-1", city="south")
    await hub.create_booking(id="d-1")  # the default city
    wrong = await hub.post("/v1/dispatch/batch", {"city": "north", "booking_ids": ["n-1", "s-1"]})
    assert (wrong.status_code, wrong.json()["code"]) == (404, "not_found")
    assert "s-1" in wrong.json()["message"]
    missing = await hub.post("/v1/dispatch/batch", {"city": "north", "booking_ids": ["zz"]})
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    unknown = await hub.post("/v1/dispatch/batch", {"city": "atlantis"})
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_city")
    # No city: the default city's waiting bookings only.
    default = await hub.post("/v1/dispatch/batch", {})
    assert default.status_code == 200, default.text
    assert default.json()["city"] == "default"
    assert default.json()["unassigned"] == [
        {"booking_id": "d-1", "reason": "no_feasible_technician"}
    ]
    named = (await hub.post("/v1/dispatch/batch", {"city": "north", "booking_ids": ["n-1"]})).json()
    assert named["unassigned"] == [{"booking_id": "n-1", "reason": "no_feasible_technician"}]


async def test_batch_with_fewer_technicians_than_bookings(hub: RunningHub):
    await put_city(hub, "short")
    await put_profile(hub, "t", city="short")
    await go_online(hub, "t", east(200.0))
    near, far = east(0.0), east(4000.0)
    await hub.create_booking(id="far", city="short", destination={"lat": far[0], "lon": far[1]})
    await hub.create_booking(id="near", city="short", destination={"lat": near[0], "lon": near[1]})
    result = (await hub.post("/v1/dispatch/batch", {"city": "short"})).json()
    # One technician: the cheaper booking gets them, the other waits for the next batch.
    assert [(p["booking_id"], p["technician_id"]) for p in result["assigned"]] == [("near", "t")]
    assert result["unassigned"] == [{"booking_id": "far", "reason": "technicians_taken"}]


# ---------------------------------------------------------------------------- 6. history


async def _hold_and_end(hub: RunningHub, booking_id: str, technician_id: str, how: str) -> None:
    await hub.create_booking(id=booking_id, technician_id=technician_id)
    if how == "cancelled_by_technician":
        response = await hub.post(f"/v1/bookings/{booking_id}/cancel", {"by": "technician"})
        assert response.status_code == 200, response.text
        assert response.json()["cancelled_by"] == "technician"
        return
    for step in ("en_route", "arrive", "start", "complete"):
        response = await hub.post(f"/v1/bookings/{booking_id}/{step}")
        assert response.status_code == 200, response.text


async def test_history_counts_a_technicians_cancellation_and_survives_a_restart(
    hub: RunningHub,
):
    for technician_id in ("quitter", "finisher", "newcomer"):
        await put_profile(hub, technician_id)
    await _hold_and_end(hub, "old-1", "quitter", "cancelled_by_technician")
    await _hold_and_end(hub, "old-2", "finisher", "completed")
    spot = east(600.0)
    techs = {t: await go_online(hub, t, spot) for t in ("quitter", "finisher", "newcomer")}
    await hub.create_booking(id="next", skills=["plumbing"])

    # quitter: completion (0 + 9) / (1 + 10) = 9/11, on time: no window, the prior 0.9;
    #   score (2 x 9/11 + 0.9) / 3 = 0.84545..., history_s = 300 x 0.154545 = 46.4
    # finisher: completion 10/11, score (20/11 + 0.9) / 3 = 0.90606, history_s = 28.2
    # newcomer: the prior, 30.0. Jobs today 1, 1, 0: median 1, nobody above it.
    expected = {"quitter": 46.4, "finisher": 28.2, "newcomer": 30.0}

    async def check() -> None:
        ranking = by_technician((await dry_run(hub, "next"))["ranking"])
        assert {t: r["components"]["history_s"] for t, r in ranking.items()} == expected
        assert {r["components"]["fairness_s"] for r in ranking.values()} == {0.0}
        order = sorted(ranking, key=lambda t: ranking[t]["total_s"])
        assert order == ["finisher", "newcomer", "quitter"]

    await check()
    await hub.restart()
    for technician_id in techs:
        await go_online(hub, technician_id, spot, seq=2)
    await check()


async def test_fairness_counts_jobs_today_above_the_citys_median(hub: RunningHub):
    for technician_id in ("busy", "idle-1", "idle-2"):
        await put_profile(hub, technician_id)
    await _hold_and_end(hub, "done-1", "busy", "completed")
    await _hold_and_end(hub, "done-2", "busy", "completed")
    spot = east(600.0)
    for technician_id in ("busy", "idle-1", "idle-2"):
        await go_online(hub, technician_id, spot)
    await hub.create_booking(id="next")
    # Jobs today 2, 0, 0: median 0, busy is 2 above it: 2 x 90 = 180 s.
    ranking = by_technician((await dry_run(hub, "next"))["ranking"])
    assert ranking["busy"]["components"]["fairness_s"] == 180.0
    assert ranking["idle-1"]["components"]["fairness_s"] == 0.0


async def test_on_time_arrivals_and_cancellations_by_others(hub: RunningHub):
    now = hub.hub.clock()
    for technician_id in ("punctual", "late", "spared"):
        await put_profile(hub, technician_id)
    # Checked in now: within a window that ends in an hour, after one that ended an hour ago.
    for booking_id, technician_id, window in (
        ("v-1", "punctual", {"start_t": now - 600.0, "end_t": now + 3600.0}),
        ("v-2", "late", {"start_t": now - 7200.0, "end_t": now - 3600.0}),
    ):
        await hub.create_booking(id=booking_id, technician_id=technician_id, window=window)
        for step in ("en_route", "arrive", "start", "complete"):
            assert (await hub.post(f"/v1/bookings/{booking_id}/{step}")).status_code == 200
    # The customer cancelled: says nothing of the technician, but it took their slot.
    await hub.create_booking(id="v-3", technician_id="spared")
    cancel = await hub.post("/v1/bookings/v-3/cancel", {"by": "customer"})
    assert cancel.json()["cancelled_by"] == "customer"
    for technician_id in ("punctual", "late", "spared"):
        await go_online(hub, technician_id, east(500.0))
    await hub.create_booking(id="next")
    ranking = by_technician((await dry_run(hub, "next"))["ranking"])
    # punctual: completion 10/11, on time 10/11: score 10/11, 300 x 1/11 = 27.3
    # late: completion 10/11, on time (0 + 9) / 11 = 9/11: score 29/33, 300 x 4/33 = 36.4
    # spared: no accountable visit, no window: the prior, 30.0
    history = {t: r["components"]["history_s"] for t, r in ranking.items()}
    assert history == {"punctual": 27.3, "late": 36.4, "spared": 30.0}
    # One job today each: the median is 1, nobody is above it.
    assert {r["components"]["fairness_s"] for r in ranking.values()} == {0.0}
    # The record behind it is the technician's to read (GET /v1/technicians/{id}).
    async with hub.client() as http:
        late = (await http.get("/v1/technicians/late")).json()["history"]
        spared = (await http.get("/v1/technicians/spared")).json()["history"]
    # The rates as observed (1 of 1 completed, 0 of 1 on time); the score is shrunk.
    assert late["visits"] == 1 and late["completion_rate"] == 1.0
    assert late["on_time_rate"] == 0.0 and late["jobs_today"] == 1
    assert late["score"] == pytest.approx(29 / 33)
    assert spared["cancellations"] == 0 and spared["completion_rate"] is None
    assert spared["score"] == pytest.approx(0.9)


async def test_two_concurrent_batches_assign_each_technician_once(hub: RunningHub):
    await put_city(hub, "twin")
    for technician_id, metres in (("x", 300.0), ("y", 900.0)):
        await put_profile(hub, technician_id, city="twin")
        await go_online(hub, technician_id, east(metres))
    ids = [f"w-{n}" for n in range(3)]
    for booking_id in ids:
        await hub.create_booking(id=booking_id, city="twin")
    answers = await asyncio.gather(
        *(hub.post("/v1/dispatch/batch", {"city": "twin"}) for _ in range(3))
    )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    held = await open_bookings_by_technician(hub, ids)
    assert sorted(held) == ["x", "y"] and all(len(v) == 1 for v in held.values()), held
    waiting = [b for b in ids if (await get_booking(hub, b))["status"] == "requested"]
    assert len(waiting) == 1


async def test_a_closed_booking_is_not_dispatched(hub: RunningHub):
    await hub.create_booking(id="gone")
    assert (await hub.post("/v1/bookings/gone/cancel")).status_code == 200
    for path in ("/v1/bookings/gone/dispatch?dry_run=1", "/v1/bookings/gone/dispatch"):
        answer = await hub.post(path)
        assert (answer.status_code, answer.json()["code"]) == (409, "illegal_transition")
    named = await hub.post("/v1/dispatch/batch", {"booking_ids": ["gone"]})
    assert (named.status_code, named.json()["code"]) == (409, "illegal_transition")


# ---------------------------------------------------------------------------- 8. bad input

# One more than a batch takes (BatchIn: at most 500 booking ids).
TOO_MANY_IDS = b'{"booking_ids": [' + b",".join(b'"j"' for _ in range(501)) + b"]}"


@pytest.mark.parametrize("flag", ["on", "maybe", "2", "dry"])
async def test_a_dry_run_flag_that_is_not_yes_or_no_assigns_nothing(hub: RunningHub, flag: str):
    await put_profile(hub, "t")
    await go_online(hub, "t", east(300.0))
    await hub.create_booking(id="j")
    await hub.create_booking(id="k")
    single = await hub.post(f"/v1/bookings/j/dispatch?dry_run={flag}")
    batch = await hub.post(f"/v1/dispatch/batch?dry_run={flag}", {})
    for answer in (single, batch):
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid_field"), answer.text
        assert "dry_run" in answer.json()["message"]
    for booking_id in ("j", "k"):
        assert (await get_booking(hub, booking_id))["status"] == "requested"
    for spelling in ("1", "true", "YES"):
        assert (await hub.post(f"/v1/bookings/j/dispatch?dry_run={spelling}")).json()["dry_run"]
    assert (await get_booking(hub, "j"))["status"] == "requested"
    real = await hub.post("/v1/bookings/j/dispatch?dry_run=0")
    assert (real.json()["dry_run"], real.json()["booking"]["technician_id"]) == (False, "t")


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{", 400, "invalid_json"),
        (b"[]", 422, "invalid_field"),
        (b'{"city": 5}', 422, "invalid_field"),
        (b'{"city": "a b"}', 422, "invalid_field"),
        (b'{"booking_ids": "j"}', 422, "invalid_field"),
        (b'{"booking_ids": [""]}', 422, "invalid_field"),
        (b'{"booking_ids": [1]}', 422, "invalid_field"),
        (TOO_MANY_IDS, 422, "invalid_field"),
        (b'{"window": 60}', 422, "invalid_field"),
    ],
)
async def test_malformed_batch_bodies_are_4xx_json_and_assign_nothing(
    hub: RunningHub, raw: bytes, status: int, code: str
):
    await put_profile(hub, "t")
    await go_online(hub, "t", east(300.0))
    await hub.create_booking(id="j")
    async with hub.client() as http:
        answer = await http.post(
            "/v1/dispatch/batch", content=raw, headers={"content-type": "application/json"}
        )
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert (await get_booking(hub, "j"))["status"] == "requested"


async def test_empty_batch_and_duplicate_ids(hub: RunningHub):
    await put_profile(hub, "t")
    await go_online(hub, "t", east(300.0))
    await hub.create_booking(id="j")
    empty = (await hub.post("/v1/dispatch/batch", {"booking_ids": []})).json()
    assert (empty["assigned"], empty["unassigned"], empty["total_s"]) == ([], [], 0.0)
    assert (await get_booking(hub, "j"))["status"] == "requested"
    twice = (await hub.post("/v1/dispatch/batch", {"booking_ids": ["j", "j"]})).json()
    assert [(a["booking_id"], a["technician_id"]) for a in twice["assigned"]] == [("j", "t")]


@pytest.mark.parametrize(
    "body", [{"by": "robot"}, {"by": 1}, {"by": "technician", "why": "x"}, {"cause": "x" * 501}]
)
async def test_bad_cancel_bodies_are_refused_and_the_booking_stays(
    hub: RunningHub, body: dict[str, Any]
):
    await hub.create_booking(id="j", technician_id="t")
    answer = await hub.post("/v1/bookings/j/cancel", body)
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_field"), answer.text
    booking = await get_booking(hub, "j")
    assert booking["status"] == "assigned" and "cancelled_by" not in booking
    assert await hub.hub.store.get_document("visits", "t") is None


# ---------------------------------------------------------------------------- cities, two hubs


async def store_city_as_another_hub_would(hub: RunningHub, city: City) -> None:
    """What another hub's PUT leaves in the shared store before its cluster notice arrives
    here: the document, and no word to this hub's mirror."""
    await hub.hub.store.put_document("cities", city.id, msgspec.json.encode(city))


async def test_a_city_stored_by_another_hub_is_usable_before_its_notice(hub: RunningHub):
    await put_zone(hub, "mitte")
    await store_city_as_another_hub_would(
        hub, City(id="fresh", name="Fresh", timezone="Europe/Berlin", zone_ids=("mitte",))
    )
    booking = await hub.create_booking(id="b-1", city="fresh")
    assert booking["city"] == "fresh"
    # Judged by its own rules at once: 3 km east is outside its zone.
    far = east(3000.0)
    async with hub.client() as http:
        outside = await http.post(
            "/v1/bookings",
            json={
                "customer_id": "c",
                "city": "fresh",
                "destination": {"lat": far[0], "lon": far[1]},
            },
        )
    assert (outside.status_code, outside.json()["code"]) == (422, "outside_service_area")
    await store_city_as_another_hub_would(hub, City(id="other", name="O", timezone="UTC"))
    batch = await hub.post("/v1/dispatch/batch", {"city": "other"})
    assert (batch.status_code, batch.json()["city"]) == (200, "other")
    # A city nobody stored is still unknown.
    unknown = await hub.post("/v1/dispatch/batch", {"city": "atlantis"})
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_city")


async def test_waiting_bookings_of_a_city_not_yet_heard_of_stay_out_of_the_default_batch(
    hub: RunningHub,
):
    await put_city(hub, "known")
    await hub.create_booking(id="k-1", city="known")
    # Make this hub forget it, as a hub that has not heard of it yet.
    hub.hub.cities._cities.pop("known")
    default = (await hub.post("/v1/dispatch/batch", {})).json()
    assert default["unassigned"] == [] and default["assigned"] == []


async def test_a_profile_may_name_a_city_stored_by_another_hub(hub: RunningHub):
    await store_city_as_another_hub_would(hub, City(id="fresh", name="F", timezone="UTC"))
    async with hub.client() as http:
        answer = await http.put("/v1/technicians/t", json={"city": "fresh"})
    assert answer.status_code == 200, answer.text
