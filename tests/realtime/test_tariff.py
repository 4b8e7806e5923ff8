"""Travel-fee quotes (realtime/tariff.py): lines, night and peak, cap and minimum, rounding.

Berlin is UTC+1 in winter, UTC+2 in summer; 1 Dec 2026 is a Tuesday, 4 Dec a Friday.
In 2026 Berlin's clocks jump 02:00 -> 03:00 on 29 March and fall back 03:00 -> 02:00 on
25 October, both at 01:00 UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.local_time import LocalWindow
from realtime.tariff import DEFAULT_TARIFF, FeeLine, Tariff, quote_fee

BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
WEEKDAYS = (0, 1, 2, 3, 4)
# Tue 1 Dec 2026, 13:00 CET: neither night nor peak.
AFTERNOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()

PLAIN = Tariff(version="2026-12-01", currency="EUR", base_fee=2.5, free_km=3, per_km=0.8)
NIGHT = LocalWindow(start="22:00", end="06:00")
MORNING_PEAK = LocalWindow(days=WEEKDAYS, start="07:00", end="09:00")


def utc(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()


def with_(tariff: Tariff, **changes: object) -> Tariff:
    return msgspec.structs.replace(tariff, **changes)


def codes(quote: object) -> list[str]:
    return [line.code for line in quote.breakdown]  # type: ignore[attr-defined]


def test_kilometres_over_the_free_ones_are_charged() -> None:
    quote = quote_fee(PLAIN, 7400, 0, AFTERNOON, BERLIN)
    # 2.50 + (7.4 - 3) km x 0.80 = 2.50 + 3.52 = 6.02
    assert quote.breakdown == (
        FeeLine("base", 250, "base fee 2.50"),
        FeeLine("distance", 352, "7.4 km - 3 km free = 4.4 km x 0.80"),
        FeeLine("time", 0, "0 min x 0.00"),
    )
    assert quote.total_minor == 602
    assert (quote.currency, quote.minor_digits, quote.tariff_version) == ("EUR", 2, "2026-12-01")
    assert quote.local_time == "2026-12-01T13:00:00+01:00"
    assert (quote.night, quote.peak) == (False, False)


def test_a_trip_within_the_free_kilometres_pays_the_base_fee() -> None:
    quote = quote_fee(PLAIN, 2100, 0, AFTERNOON, BERLIN)
    assert quote.breakdown[1] == FeeLine("distance", 0, "2.1 km - 3 km free = 0 km x 0.80")
    assert quote.total_minor == 250
    # Exactly at the free distance: nothing either.
    assert quote_fee(PLAIN, 3000, 0, AFTERNOON, BERLIN).total_minor == 250


def test_minutes_are_charged_per_minute() -> None:
    timed = with_(PLAIN, per_min=0.2)
    # 750 s = 12.5 min x 0.20 = 2.50; 100 s = 5/3 min x 0.30 = 0.50 exactly.
    assert quote_fee(timed, 0, 750, AFTERNOON, BERLIN).breakdown[2] == FeeLine(
        "time", 250, "12.5 min x 0.20"
    )
    assert quote_fee(with_(PLAIN, per_min=0.3), 0, 100, AFTERNOON, BERLIN).breakdown[2] == (
        FeeLine("time", 50, "1.67 min (100 s) x 0.30")
    )


def test_the_cap_brings_a_long_trip_down() -> None:
    capped = with_(PLAIN, cap=10)
    quote = quote_fee(capped, 20_000, 0, AFTERNOON, BERLIN)
    # 2.50 + 17 km x 0.80 = 16.10, capped at 10.00: a -6.10 line.
    assert quote.breakdown[-1] == FeeLine("cap", -610, "capped at 10.00")
    assert quote.total_minor == 1000
    # A total exactly at the cap gets no cap line: 2.50 + 9.375 km x 0.80 = 10.00.
    assert codes(quote_fee(capped, 12_375, 0, AFTERNOON, BERLIN)) == ["base", "distance", "time"]


def test_the_minimum_brings_a_short_trip_up() -> None:
    quote = quote_fee(with_(PLAIN, minimum=5), 1000, 0, AFTERNOON, BERLIN)
    assert quote.breakdown[-1] == FeeLine("minimum", 250, "minimum fee 5.00")
    assert quote.total_minor == 500
    # Above the minimum: no line. 2.50 + 4 km x 0.80 = 5.70.
    assert codes(quote_fee(with_(PLAIN, minimum=5), 7000, 0, AFTERNOON, BERLIN))[-1] == "time"


@pytest.mark.parametrize(
    ("t", "local", "night"),
    [
        (utc(2026, 12, 1, 22, 30), "2026-12-01T23:30:00+01:00", True),
        (utc(2026, 12, 2, 4, 59), "2026-12-02T05:59:00+01:00", True),
        (utc(2026, 12, 2, 5, 0), "2026-12-02T06:00:00+01:00", False),
        (utc(2026, 12, 1, 21, 0), "2026-12-01T22:00:00+01:00", True),
        (utc(2026, 12, 1, 20, 59), "2026-12-01T21:59:00+01:00", False),
    ],
)
def test_the_night_window_crosses_midnight(t: float, local: str, night: bool) -> None:
    tariff = with_(PLAIN, night=NIGHT, night_multiplier=1.25)
    quote = quote_fee(tariff, 7400, 0, t, BERLIN)
    assert quote.local_time == local
    assert quote.night is night
    if night:
        # 6.02 x 0.25 = 1.505 -> 1.51 (half up): 7.53.
        assert quote.breakdown[-1] == FeeLine("night", 151, "night 22:00-06:00: x 1.25 on 6.02")
        assert quote.total_minor == 753
    else:
        assert quote.total_minor == 602


def test_peak_hours_depend_on_the_weekday() -> None:
    tariff = with_(PLAIN, peak=(MORNING_PEAK,), peak_multiplier=1.5)
    tuesday_8 = quote_fee(tariff, 7400, 0, utc(2026, 12, 1, 7, 0), BERLIN)  # Tue 08:00 CET
    # 6.02 x 0.5 = 3.01: 9.03.
    assert tuesday_8.peak
    assert tuesday_8.breakdown[-1] == FeeLine(
        "peak", 301, "peak Mon,Tue,Wed,Thu,Fri 07:00-09:00: x 1.5 on 6.02"
    )
    assert tuesday_8.total_minor == 903
    saturday_8 = quote_fee(tariff, 7400, 0, utc(2026, 12, 5, 7, 0), BERLIN)
    assert not saturday_8.peak
    assert saturday_8.total_minor == 602


def test_the_second_of_two_peak_windows_counts_too() -> None:
    evening = LocalWindow(days=(4,), start="17:00", end="20:00")
    tariff = with_(PLAIN, peak=(MORNING_PEAK, evening), peak_multiplier=1.5)
    quote = quote_fee(tariff, 7400, 0, utc(2026, 12, 4, 17, 0), BERLIN)  # Fri 18:00 CET
    assert quote.peak
    assert quote.breakdown[-1].detail.startswith("peak Fri 17:00-20:00")


def test_night_and_peak_together_charge_only_the_larger_multiplier() -> None:
    friday_late = LocalWindow(days=(4,), start="20:00", end="02:00")
    tariff = with_(
        PLAIN, night=NIGHT, night_multiplier=1.25, peak=(friday_late,), peak_multiplier=1.5
    )
    quote = quote_fee(tariff, 7400, 0, utc(2026, 12, 4, 22, 30), BERLIN)  # Fri 23:30 CET
    assert (quote.night, quote.peak) == (True, True)
    # Peak's x1.5 wins: 6.02 x 0.5 = 3.01 (not 6.02 x 1.875 - 6.02 = 5.27 for both).
    assert codes(quote) == ["base", "distance", "time", "peak"]
    assert quote.breakdown[-1] == FeeLine(
        "peak",
        301,
        "peak Fri 20:00-02:00: x 1.5 on 6.02 (night x 1.25 also applies; only the larger counts)",
    )
    assert quote.total_minor == 903
    # The night's multiplier larger: night wins.
    night_wins = quote_fee(
        with_(tariff, night_multiplier=2.0), 7400, 0, utc(2026, 12, 4, 22, 30), BERLIN
    )
    assert codes(night_wins)[-1] == "night"
    assert night_wins.total_minor == 1204


def test_a_tie_between_night_and_peak_goes_to_night() -> None:
    tariff = with_(
        PLAIN,
        night=NIGHT,
        night_multiplier=1.5,
        peak=(LocalWindow(start="22:00", end="23:59"),),
        peak_multiplier=1.5,
    )
    quote = quote_fee(tariff, 7400, 0, utc(2026, 12, 4, 22, 30), BERLIN)
    assert codes(quote)[-1] == "night"
    assert quote.total_minor == 903


def test_a_window_with_multiplier_one_is_reported_but_adds_no_line() -> None:
    quote = quote_fee(with_(PLAIN, night=NIGHT), 7400, 0, utc(2026, 12, 1, 22, 30), BERLIN)
    assert quote.night
    assert codes(quote) == ["base", "distance", "time"]


def test_the_night_on_the_spring_forward_day_is_two_real_hours() -> None:
    # Night 01:00-04:00 on 29 March: 01:00 CET (00:00 UTC) to 04:00 CEST (02:00 UTC).
    tariff = with_(PLAIN, night=LocalWindow(start="01:00", end="04:00"), night_multiplier=2.0)
    assert not quote_fee(tariff, 0, 0, utc(2026, 3, 28, 23, 59), BERLIN).night
    assert quote_fee(tariff, 0, 0, utc(2026, 3, 29, 0, 30), BERLIN).night  # 01:30 CET
    at_0330 = quote_fee(tariff, 0, 0, utc(2026, 3, 29, 1, 30), BERLIN)
    assert at_0330.local_time == "2026-03-29T03:30:00+02:00"
    assert at_0330.night
    assert at_0330.total_minor == 500  # 2.50 x 2
    assert not quote_fee(tariff, 0, 0, utc(2026, 3, 29, 2, 0), BERLIN).night  # 04:00 CEST


def test_both_0230s_of_the_fall_back_day_are_night() -> None:
    # Night 01:00-04:00 on 25 October: 01:00 CEST (Sat 23:00 UTC) to 04:00 CET (03:00 UTC).
    tariff = with_(PLAIN, night=LocalWindow(start="01:00", end="04:00"), night_multiplier=2.0)
    first = quote_fee(tariff, 0, 0, utc(2026, 10, 25, 0, 30), BERLIN)
    second = quote_fee(tariff, 0, 0, utc(2026, 10, 25, 1, 30), BERLIN)
    assert first.local_time == "2026-10-25T02:30:00+02:00"
    assert second.local_time == "2026-10-25T02:30:00+01:00"
    assert first.night and second.night
    assert first.total_minor == second.total_minor == 500
    assert quote_fee(tariff, 0, 0, utc(2026, 10, 24, 23, 0), BERLIN).night  # 01:00 CEST
    assert quote_fee(tariff, 0, 0, utc(2026, 10, 25, 2, 59), BERLIN).night  # 03:59 CET
    assert not quote_fee(tariff, 0, 0, utc(2026, 10, 25, 3, 0), BERLIN).night  # 04:00 CET


def test_night_is_local_midnight_in_kolkata_not_utc() -> None:
    tariff = with_(PLAIN, night=NIGHT, night_multiplier=1.25)
    # 17:00 UTC is 22:30 IST (UTC+5:30): night there, though not by UTC.
    evening = quote_fee(tariff, 0, 0, utc(2026, 12, 1, 17, 0), KOLKATA)
    assert evening.local_time == "2026-12-01T22:30:00+05:30"
    assert evening.night
    # 00:30 UTC is 06:00 IST: morning there, though night by UTC.
    morning = quote_fee(tariff, 0, 0, utc(2026, 12, 2, 0, 30), KOLKATA)
    assert morning.local_time == "2026-12-02T06:00:00+05:30"
    assert not morning.night


def test_peak_weekday_is_the_local_one_in_los_angeles() -> None:
    tariff = with_(PLAIN, peak=(MORNING_PEAK,), peak_multiplier=1.5)
    # Mon 30 Nov 07:30 PST (UTC-8) = 15:30 UTC: peak.
    monday = quote_fee(tariff, 0, 0, utc(2026, 11, 30, 15, 30), LOS_ANGELES)
    assert monday.local_time == "2026-11-30T07:30:00-08:00"
    assert monday.peak
    # Mon 07:30 UTC is Sun 29 Nov 23:30 in Los Angeles: no peak on Sunday.
    sunday = quote_fee(tariff, 0, 0, utc(2026, 11, 30, 7, 30), LOS_ANGELES)
    assert sunday.local_time == "2026-11-29T23:30:00-08:00"
    assert not sunday.peak


def test_each_line_is_rounded_half_up_once_exactly() -> None:
    # 1.005 as a float is 1.00499999...; read as written it is 100.5 cents -> 101.
    assert quote_fee(with_(PLAIN, base_fee=1.005), 0, 0, AFTERNOON, BERLIN).total_minor == 101
    per_eighth = Tariff(version="r", currency="EUR", per_km=0.125)
    # 1.004 km x 0.125 = 0.1255 -> 12.55 cents -> 13; 0.996 km -> 12.45 cents -> 12.
    assert quote_fee(per_eighth, 1004, 0, AFTERNOON, BERLIN).breakdown[1] == FeeLine(
        "distance", 13, "1.004 km - 0 km free = 1.004 km x 0.125"
    )
    assert quote_fee(per_eighth, 996, 0, AFTERNOON, BERLIN).total_minor == 12
    # Distance is counted in whole metres (half up): at 10 cents a metre, 1003.4 m is
    # 1003 m = 100.30, 1003.5 m is 1004 m = 100.40.
    per_metre = Tariff(version="r", currency="EUR", per_km=100)
    assert quote_fee(per_metre, 1003.4, 0, AFTERNOON, BERLIN).total_minor == 10030
    assert quote_fee(per_metre, 1003.5, 0, AFTERNOON, BERLIN).total_minor == 10040
    # A float sum would drift: 0.1 + 0.2 != 0.3, but 0.1 base + 0.2 per km x 1 km is 30 cents.
    tenths = Tariff(version="r", currency="EUR", base_fee=0.1, per_km=0.2)
    assert quote_fee(tenths, 1000, 0, AFTERNOON, BERLIN).total_minor == 30


def test_a_currency_without_cents() -> None:
    yen = Tariff(version="jp", currency="JPY", base_fee=300, per_km=50.5, minor_digits=0)
    quote = quote_fee(yen, 1500, 0, AFTERNOON, BERLIN)
    # 300 + 1.5 km x 50.5 = 300 + 75.75 -> 76: 376 yen.
    assert quote.breakdown[:2] == (
        FeeLine("base", 300, "base fee 300"),
        FeeLine("distance", 76, "1.5 km - 0 km free = 1.5 km x 50.5"),
    )
    assert quote.total_minor == 376


def test_the_default_tariff_is_free() -> None:
    quote = quote_fee(DEFAULT_TARIFF, 25_000, 3600, AFTERNOON, BERLIN)
    assert quote.total_minor == 0
    assert [line.amount_minor for line in quote.breakdown] == [0, 0, 0]
    assert (quote.currency, quote.tariff_version) == ("XXX", "free")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"base_fee": -1}, "base_fee must be a finite number >= 0, not -1"),
        ({"per_km": float("nan")}, "per_km must be a finite number"),
        ({"free_km": -0.5}, "free_km must be"),
        ({"cap": -1.0}, "cap must be"),
        ({"per_min": True}, "per_min must be"),
        ({"night_multiplier": 0.9}, "night_multiplier must be from 1"),
        ({"peak_multiplier": 125.0}, "peak_multiplier must be from 1 .* to 10"),
        ({"currency": "eur"}, "ISO 4217"),
        ({"currency": "EURO"}, "ISO 4217"),
        ({"version": " "}, "needs a version"),
        ({"minimum": 20, "cap": 10}, "minimum 20 is above cap 10"),
        ({"minor_digits": 5}, "minor_digits must be 0 to 4"),
    ],
)
def test_a_bad_tariff_is_refused_with_a_clear_message(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        with_(PLAIN, **changes)


def test_a_tariff_decodes_from_json_and_refuses_bad_bodies() -> None:
    body = b"""{"version": "2026-12-01", "currency": "EUR", "base_fee": 2.5, "free_km": 3,
        "per_km": 0.8, "night": {"start": "22:00", "end": "06:00"}, "night_multiplier": 1.25,
        "peak": [{"days": [0, 1, 2, 3, 4], "start": "07:00", "end": "09:00"}],
        "peak_multiplier": 1.5, "cap": 40, "minimum": 5}"""
    tariff = msgspec.json.decode(body, type=Tariff)
    assert tariff.night == NIGHT
    assert tariff.peak == (MORNING_PEAK,)
    assert (tariff.cap, tariff.minimum, tariff.per_min) == (40, 5, 0.0)
    assert msgspec.json.decode(msgspec.json.encode(tariff), type=Tariff) == tariff
    with pytest.raises(msgspec.ValidationError, match="unknown field `surge`"):
        msgspec.json.decode(b'{"version": "v", "currency": "EUR", "surge": 2}', type=Tariff)
    with pytest.raises(msgspec.ValidationError, match=r"'HH:MM'.* at `\$.night`"):
        msgspec.json.decode(
            b'{"version": "v", "currency": "EUR", "night": {"start": "22h", "end": "06:00"}}',
            type=Tariff,
        )
    with pytest.raises(msgspec.ValidationError, match="base_fee must be"):
        msgspec.json.decode(b'{"version": "v", "currency": "EUR", "base_fee": -2}', type=Tariff)
    with pytest.raises(msgspec.ValidationError, match="missing required field `currency`"):
        msgspec.json.decode(b'{"version": "v"}', type=Tariff)


@pytest.mark.parametrize(
    ("distance_m", "duration_s", "at_t", "message"),
    [
        (-1.0, 0.0, AFTERNOON, "distance_m must be"),
        (float("inf"), 0.0, AFTERNOON, "distance_m must be"),
        (0.0, float("nan"), AFTERNOON, "duration_s must be"),
        (0.0, -5, AFTERNOON, "duration_s must be"),
        (0.0, 0.0, float("inf"), "finite"),
    ],
)
def test_bad_trip_input_is_refused(
    distance_m: float, duration_s: float, at_t: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        quote_fee(PLAIN, distance_m, duration_s, at_t, BERLIN)


FULL = with_(
    PLAIN,
    per_min=0.35,
    night=NIGHT,
    night_multiplier=1.3,
    peak=(MORNING_PEAK,),
    peak_multiplier=1.2,
    cap=60,
    minimum=7,
)


@given(
    distance_m=st.floats(0, 200_000),
    duration_s=st.floats(0, 4 * 3600),
    at_t=st.floats(utc(2026, 1, 1), utc(2027, 1, 1)),
)
def test_lines_add_up_to_a_total_between_minimum_and_cap(
    distance_m: float, duration_s: float, at_t: float
) -> None:
    quote = quote_fee(FULL, distance_m, duration_s, at_t, BERLIN)
    assert quote.total_minor == sum(line.amount_minor for line in quote.breakdown)
    assert 700 <= quote.total_minor <= 6000
    assert codes(quote)[:3] == ["base", "distance", "time"]
    assert len({"night", "peak"} & set(codes(quote))) <= 1
