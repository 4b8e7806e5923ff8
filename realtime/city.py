"""A city Doorstep serves: its clock, its service area, its fee and its local overrides.

One hub can serve several cities, and each differs in what a person there expects: the
local time shifts and night fees are read in, which Doorstep zones bookings may come from,
the travel-fee tariff, how dispatch weighs wait against fairness, how fast escalation
reaches emergency contacts, which operators watch it, how long its data is kept. Every
override left unset (None) means "the hub's default", and ``DEFAULT_CITY`` is a city with
no overrides at all, so a deployment that configures no city behaves as before.

Decoding a City from JSON (``msgspec.json.decode(body, type=City)``) checks all of it:
unknown fields and bad values are refused with a ``msgspec.ValidationError`` naming the
rule and where, so nothing malformed reaches a store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from realtime.dispatch_weights import DEFAULT_WEIGHTS, DispatchWeights
from realtime.tariff import DEFAULT_TARIFF, Tariff

MAX_ID_CHARS = 64
MAX_NAME_CHARS = 100
# Ten years: longer is more likely a unit mistake (seconds or hours for days) than a policy.
MAX_RETENTION_DAYS = 3650


def _check_text(what: str, value: object, max_chars: int) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > max_chars:
        raise ValueError(f"{what} must be 1 to {max_chars} characters, not blank: {value!r}")


class EscalationOverrides(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The city's escalation timers, in seconds after an unacknowledged incident was raised
    (the clock of ``alerts/escalation.py``): ``realert_after_s`` re-alerts the operators and
    calls the supervisor (the hub's T1), ``contacts_after_s`` notifies the person's
    emergency contacts (T2). None leaves the hub's setting."""

    realert_after_s: float | None = None
    contacts_after_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("realert_after_s", "contacts_after_s"):
            value = getattr(self, name)
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(
                    f"escalation {name} must be a number of seconds > 0 "
                    f"(or null for the hub default), not {value!r}"
                )
        first, second = self.realert_after_s, self.contacts_after_s
        if first is not None and second is not None and second < first:
            raise ValueError(
                f"escalation contacts_after_s ({second:g} s) must not come before "
                f"realert_after_s ({first:g} s)"
            )

    def timers(self, default_t1_s: float, default_t2_s: float) -> tuple[float, float]:
        """(T1, T2) with the hub's defaults where the city sets none; T2 never before T1."""
        t1 = default_t1_s if self.realert_after_s is None else self.realert_after_s
        t2 = default_t2_s if self.contacts_after_s is None else self.contacts_after_s
        return t1, max(t1, t2)


NO_ESCALATION_OVERRIDES = EscalationOverrides()


class City(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: str
    name: str
    timezone: str  # an IANA zone, e.g. "Europe/Berlin"
    # The Doorstep zones that make up the service area; none: no area restriction.
    zone_ids: tuple[str, ...] = ()
    tariff: Tariff = DEFAULT_TARIFF
    dispatch: DispatchWeights = DEFAULT_WEIGHTS
    escalation: EscalationOverrides = NO_ESCALATION_OVERRIDES
    operator_group: str | None = None  # the operators who watch this city; None: all of them
    retention_days: int | None = None  # None: the hub's retention settings

    def __post_init__(self) -> None:
        _check_text("city id", self.id, MAX_ID_CHARS)
        where = f"city {self.id!r}"
        _check_text(f"{where}: name", self.name, MAX_NAME_CHARS)
        self.zone()  # raises a ValueError naming the zone when it does not load
        for zone_id in self.zone_ids:
            _check_text(f"{where}: a zone id", zone_id, MAX_ID_CHARS)
        if len(set(self.zone_ids)) != len(self.zone_ids):
            raise ValueError(f"{where}: zone ids listed twice in {list(self.zone_ids)}")
        if self.operator_group is not None:
            _check_text(f"{where}: operator_group", self.operator_group, MAX_ID_CHARS)
        days = self.retention_days
        if days is not None and (
            isinstance(days, bool)
            or not isinstance(days, int)
            or not 1 <= days <= MAX_RETENTION_DAYS
        ):
            raise ValueError(
                f"{where}: retention_days must be a whole number of days from 1 to "
                f"{MAX_RETENTION_DAYS} (or null for the hub default), not {days!r}"
            )

    def zone(self) -> ZoneInfo:
        """The city's time zone. ``ZoneInfo`` keeps one object per key, so this is a cache
        lookup after the first call (the zone's file is read once per process)."""
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
            # NotFound: an unknown key; ValueError: a path-like or non-TZif key;
            # OSError: a directory ("Europe"); TypeError: not a string.
            raise ValueError(
                f"city {self.id!r}: unknown time zone {self.timezone!r} "
                "(an IANA name such as 'Europe/Berlin' or 'UTC')"
            ) from None


DEFAULT_CITY = City(id="default", name="Default", timezone="UTC")
"""UTC, no service area, free tariff, hub defaults everywhere: Doorstep before cities."""


def in_service_area(city: City, zone_ids_containing_point: Iterable[str]) -> bool:
    """Whether a point inside these Doorstep zones is in the city's service area; a city
    with no zones configured serves everywhere."""
    if not city.zone_ids:
        return True
    return not set(city.zone_ids).isdisjoint(zone_ids_containing_point)
