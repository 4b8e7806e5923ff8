"""Cities: validation, JSON decoding, the default city and the service area (realtime/city.py)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import msgspec
import pytest

from realtime.city import (
    DEFAULT_CITY,
    NO_ESCALATION_OVERRIDES,
    City,
    EscalationOverrides,
    in_service_area,
)
from realtime.dispatch_weights import DEFAULT_WEIGHTS, DispatchWeights
from realtime.local_time import LocalWindow
from realtime.tariff import DEFAULT_TARIFF, Tariff

BERLIN_BODY = b"""{
    "id": "berlin",
    "name": "Berlin",
    "timezone": "Europe/Berlin",
    "zone_ids": ["mitte", "kreuzberg"],
    "tariff": {"version": "2026-12-01", "currency": "EUR", "base_fee": 2.5, "free_km": 3,
               "per_km": 0.8, "night": {"start": "22:00", "end": "06:00"},
               "night_multiplier": 1.25},
    "dispatch": {"eta": 1.0, "fairness_per_job_s": 60},
    "escalation": {"realert_after_s": 45, "contacts_after_s": 120},
    "operator_group": "ops-berlin",
    "retention_days": 30
}"""


def decode(body: bytes) -> City:
    return msgspec.json.decode(body, type=City)


def with_field(**fields: object) -> bytes:
    """A minimal valid city body with ``fields`` added or replaced."""
    base: dict[str, object] = {"id": "c", "name": "C", "timezone": "UTC"}
    return msgspec.json.encode(base | fields)


def test_the_default_city_is_doorstep_before_cities() -> None:
    assert DEFAULT_CITY.id == "default"
    assert DEFAULT_CITY.zone() == ZoneInfo("UTC")
    assert DEFAULT_CITY.zone_ids == ()
    assert DEFAULT_CITY.tariff is DEFAULT_TARIFF
    assert DEFAULT_CITY.dispatch is DEFAULT_WEIGHTS
    assert DEFAULT_CITY.escalation == EscalationOverrides()
    assert DEFAULT_CITY.escalation.contacts_after_s is None
    assert (DEFAULT_CITY.operator_group, DEFAULT_CITY.retention_days) == (None, None)


def test_a_full_city_decodes_from_json() -> None:
    city = decode(BERLIN_BODY)
    assert city.zone() is ZoneInfo("Europe/Berlin")  # zoneinfo's own cache: one object
    assert city.zone_ids == ("mitte", "kreuzberg")
    assert city.tariff == Tariff(
        version="2026-12-01",
        currency="EUR",
        base_fee=2.5,
        free_km=3,
        per_km=0.8,
        night=LocalWindow(start="22:00", end="06:00"),
        night_multiplier=1.25,
    )
    assert city.dispatch == DispatchWeights(eta=1.0, fairness_per_job_s=60)
    assert city.escalation == EscalationOverrides(realert_after_s=45, contacts_after_s=120)
    assert (city.operator_group, city.retention_days) == ("ops-berlin", 30)
    assert decode(msgspec.json.encode(city)) == city


def test_a_minimal_city_takes_every_default() -> None:
    city = decode(b'{"id": "lisbon", "name": "Lisboa", "timezone": "Europe/Lisbon"}')
    assert city.tariff is DEFAULT_TARIFF
    assert city.dispatch is DEFAULT_WEIGHTS
    assert city.escalation is NO_ESCALATION_OVERRIDES
    assert city.zone_ids == ()


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "Europe", "../etc/passwd", "", "utc"])
def test_a_time_zone_that_does_not_load_is_refused(timezone: str) -> None:
    with pytest.raises(ValueError, match=f"city 'c': unknown time zone '{timezone}'"):
        City(id="c", name="C", timezone=timezone)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"timezone": "Europe/Berln"}, "city 'c': unknown time zone 'Europe/Berln' \\(an IANA"),
        ({"population": 3_700_000}, "unknown field `population`"),
        ({"tariff": {"version": "v", "currency": "EUR", "surge": 2}}, "unknown field `surge`"),
        ({"tariff": {"version": "v", "currency": "euro"}}, "ISO 4217 .* at `\\$.tariff`"),
        ({"dispatch": {"eta": -1}}, "dispatch weight eta must be within"),
        ({"escalation": {"realert_after_s": 0}}, "realert_after_s must be .* > 0"),
        ({"escalation": {"contacts_after_s": -3}}, "contacts_after_s must be"),
        (
            {"escalation": {"realert_after_s": 60, "contacts_after_s": 50}},
            "contacts_after_s \\(50 s\\) must not come before realert_after_s \\(60 s\\)",
        ),
        ({"escalation": {"after": 5}}, "unknown field `after`"),
        ({"retention_days": 0}, "retention_days must be a whole number of days from 1"),
        ({"retention_days": 4000}, "retention_days must be"),
        ({"retention_days": 1.5}, "Expected `int \\| null`, got `float`"),
        ({"zone_ids": ["mitte", "mitte"]}, "zone ids listed twice"),
        ({"zone_ids": [""]}, "a zone id must be 1 to 64 characters"),
        ({"operator_group": " "}, "operator_group must be"),
        ({"id": ""}, "city id must be"),
        ({"name": "x" * 101}, "name must be 1 to 100 characters"),
    ],
)
def test_a_bad_city_body_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        decode(with_field(**fields))


def test_a_body_without_a_time_zone_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="missing required field `timezone`"):
        decode(b'{"id": "c", "name": "C"}')


def test_in_the_service_area_when_the_point_is_in_one_of_its_zones() -> None:
    city = decode(BERLIN_BODY)
    assert in_service_area(city, ["spandau", "kreuzberg"])
    assert in_service_area(city, iter(["mitte"]))  # any iterable, read once
    assert not in_service_area(city, ["spandau"])
    assert not in_service_area(city, [])


def test_a_city_without_zones_serves_everywhere() -> None:
    assert in_service_area(DEFAULT_CITY, [])
    assert in_service_area(DEFAULT_CITY, ["anything"])
