"""Local wall-clock windows as real instants (realtime/local_time.py).

Instants are written in UTC with the offset worked out by hand: Berlin is UTC+1 (CET) in
winter and UTC+2 (CEST) in summer; in 2026 its clocks jump 02:00 -> 03:00 on Sunday
29 March at 01:00 UTC and fall back 03:00 -> 02:00 on Sunday 25 October at 01:00 UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.local_time import (
    LocalWindow,
    first_instant_showing,
    last_instant_showing,
    local_date,
    parse_hhmm,
)

BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def utc(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "minutes"), [("00:00", 0), ("06:00", 360), ("22:30", 1350), ("23:59", 1439)]
)
def test_hhmm_is_minutes_since_midnight(text: str, minutes: int) -> None:
    assert parse_hhmm(text) == minutes


def test_24_00_is_only_an_end() -> None:
    assert parse_hhmm("24:00", allow_end_of_day=True) == 1440
    with pytest.raises(ValueError, match="'HH:MM' from 00:00 to 23:59, not '24:00'"):
        parse_hhmm("24:00")


@pytest.mark.parametrize("text", ["7:00", "07:0", "12:60", "25:00", "ab:cd", "", " 07:00", "0700"])
def test_a_malformed_time_is_refused_with_the_format(text: str) -> None:
    with pytest.raises(ValueError, match="'HH:MM'"):
        parse_hhmm(text)


def test_a_time_that_is_not_text_is_refused() -> None:
    with pytest.raises(ValueError, match="not 700"):
        parse_hhmm(700)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start": "22:00", "end": "22:00"}, "ambiguous"),
        ({"start": "22:00", "end": "6:00"}, "'HH:MM'"),
        ({"start": "22:00", "end": "06:00", "days": ()}, "at least one weekday"),
        ({"start": "22:00", "end": "06:00", "days": (7,)}, "not 7"),
        ({"start": "22:00", "end": "06:00", "days": (-1,)}, "not -1"),
        ({"start": "22:00", "end": "06:00", "days": (True,)}, "not True"),
        ({"start": "22:00", "end": "06:00", "days": (4, 4)}, "listed twice"),
    ],
)
def test_a_bad_window_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalWindow(**fields)


def test_an_ordinary_local_time_is_one_instant() -> None:
    # 1 June 2026 12:00 CEST = 10:00 UTC.
    assert first_instant_showing(date(2026, 6, 1), 12 * 60, BERLIN) == utc(2026, 6, 1, 10, 0)
    assert last_instant_showing(date(2026, 6, 1), 12 * 60, BERLIN) == utc(2026, 6, 1, 10, 0)


def test_a_skipped_local_time_is_the_instant_of_the_jump() -> None:
    # 02:30 does not exist on 29 March in Berlin: the clock jumps at 01:00 UTC.
    assert first_instant_showing(date(2026, 3, 29), 150, BERLIN) == utc(2026, 3, 29, 1, 0)
    assert last_instant_showing(date(2026, 3, 29), 150, BERLIN) == utc(2026, 3, 29, 1, 0)
    # Los Angeles jumps 02:00 PST -> 03:00 PDT on 8 March 2026, at 10:00 UTC.
    assert first_instant_showing(date(2026, 3, 8), 150, LOS_ANGELES) == utc(2026, 3, 8, 10, 0)


def test_a_repeated_local_time_is_first_or_last_as_asked() -> None:
    # 02:30 happens twice on 25 October in Berlin: 00:30 UTC (CEST) and 01:30 UTC (CET).
    assert first_instant_showing(date(2026, 10, 25), 150, BERLIN) == utc(2026, 10, 25, 0, 30)
    assert last_instant_showing(date(2026, 10, 25), 150, BERLIN) == utc(2026, 10, 25, 1, 30)


def test_the_end_of_day_is_the_next_midnight() -> None:
    # 24:00 on 1 June is 2 June 00:00 CEST = 1 June 22:00 UTC.
    assert last_instant_showing(date(2026, 6, 1), 1440, BERLIN) == utc(2026, 6, 1, 22, 0)


def test_a_window_across_midnight_belongs_to_the_day_it_opens() -> None:
    friday_night = LocalWindow(days=(4,), start="22:00", end="06:00")
    assert friday_night.crosses_midnight
    # Friday 4 Dec 2026, CET (UTC+1).
    assert friday_night.covers(utc(2026, 12, 4, 21, 0), BERLIN)  # Fri 22:00
    assert friday_night.covers(utc(2026, 12, 5, 2, 0), BERLIN)  # Sat 03:00
    assert friday_night.covers(utc(2026, 12, 5, 4, 59), BERLIN)  # Sat 05:59
    assert not friday_night.covers(utc(2026, 12, 5, 5, 0), BERLIN)  # Sat 06:00: closed
    assert not friday_night.covers(utc(2026, 12, 4, 20, 59), BERLIN)  # Fri 21:59
    assert not friday_night.covers(utc(2026, 12, 4, 2, 0), BERLIN)  # Fri 03:00 (Thu's night)
    assert not friday_night.covers(utc(2026, 12, 5, 21, 30), BERLIN)  # Sat 22:30


def test_a_whole_day_window() -> None:
    sunday = LocalWindow(days=(6,), start="00:00", end="24:00")
    # Sunday 6 Dec 2026 runs from Sat 23:00 UTC to Sun 23:00 UTC.
    assert not sunday.covers(utc(2026, 12, 5, 22, 59, 59), BERLIN)
    assert sunday.covers(utc(2026, 12, 5, 23, 0), BERLIN)
    assert sunday.covers(utc(2026, 12, 6, 22, 59, 59), BERLIN)
    assert not sunday.covers(utc(2026, 12, 6, 23, 0), BERLIN)


def test_a_window_wholly_in_skipped_time_is_empty_and_never_starts_that_day() -> None:
    only_in_the_gap = LocalWindow(days=(6,), start="02:15", end="02:45")
    opens, closes = only_in_the_gap.occurrence(date(2026, 3, 29), BERLIN)
    assert opens == closes == utc(2026, 3, 29, 1, 0)
    assert not only_in_the_gap.covers(utc(2026, 3, 29, 1, 0), BERLIN)
    # From Saturday noon, the next start is the Sunday after: 5 April 02:15 CEST = 00:15 UTC.
    assert only_in_the_gap.next_start(utc(2026, 3, 28, 11, 0), BERLIN) == utc(2026, 4, 5, 0, 15)


def test_next_start_is_strictly_after_t() -> None:
    mornings = LocalWindow(days=(0, 1, 2, 3, 4), start="07:00", end="09:00")
    tuesday_7 = utc(2026, 12, 1, 6, 0)  # Tue 07:00 CET
    assert mornings.next_start(tuesday_7 - 1, BERLIN) == tuesday_7
    assert mornings.next_start(tuesday_7, BERLIN) == utc(2026, 12, 2, 6, 0)  # Wed 07:00
    # Friday after 07:00: the next is Monday 7 Dec.
    assert mornings.next_start(utc(2026, 12, 4, 8, 0), BERLIN) == utc(2026, 12, 7, 6, 0)


def test_local_date_differs_from_the_utc_date_far_from_utc() -> None:
    # 18:30 UTC on 30 Nov is midnight 1 Dec in Kolkata (UTC+5:30).
    assert local_date(utc(2026, 11, 30, 18, 30), KOLKATA) == date(2026, 12, 1)
    assert local_date(utc(2026, 11, 30, 18, 29), KOLKATA) == date(2026, 11, 30)
    # 07:00 UTC on 1 Dec is still 30 Nov 23:00 in Los Angeles (UTC-8).
    assert local_date(utc(2026, 12, 1, 7, 0), LOS_ANGELES) == date(2026, 11, 30)


def test_a_non_finite_time_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        local_date(float("nan"), BERLIN)


HHMM = st.integers(0, 1439).map(lambda m: f"{m // 60:02d}:{m % 60:02d}")
KOLKATA_OFFSET_S = 5 * 3600 + 30 * 60  # no DST: wall clock = UTC + 5:30, always


@given(
    start=HHMM,
    end=HHMM,
    days=st.sets(st.integers(0, 6), min_size=1).map(tuple),
    t=st.integers(int(utc(2026, 1, 1)), int(utc(2027, 1, 1))),
)
def test_without_dst_a_window_is_plain_wall_clock_arithmetic(
    start: str, end: str, days: tuple[int, ...], t: int
) -> None:
    if start == end:
        return
    window = LocalWindow(days=days, start=start, end=end)
    wall_s = t + KOLKATA_OFFSET_S
    weekday = (wall_s // 86400 + 3) % 7  # 1 Jan 1970 was a Thursday (3)
    minute = wall_s % 86400 // 60
    opens, closes = parse_hhmm(start), parse_hhmm(end)
    if opens < closes:
        expected = weekday in days and opens <= minute < closes
    else:
        expected = (weekday in days and minute >= opens) or (
            (weekday - 1) % 7 in days and minute < closes
        )
    assert window.covers(t, KOLKATA) is expected
