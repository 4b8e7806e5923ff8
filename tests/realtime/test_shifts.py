"""Technician shifts in local time (realtime/shifts.py).

Berlin is UTC+1 in winter, UTC+2 in summer; in 2026 its clocks jump 02:00 -> 03:00 on
Sunday 29 March (at 01:00 UTC) and fall back 03:00 -> 02:00 on Sunday 25 October (at
01:00 UTC). 4 Dec 2026 is a Friday.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.shifts import Shift, next_shift_start, on_shift

BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
FRI, SAT, SUN, MON = 4, 5, 6, 0
HOUR = 3600.0


def utc(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()


def real_length_s(shift: Shift, opens_near: float) -> float:
    """How long the shift that opens next after ``opens_near`` is on, in real seconds."""
    opens = next_shift_start([shift], opens_near, BERLIN)
    assert opens is not None
    t = opens
    while on_shift([shift], t, BERLIN):
        t += 60.0
    return t - opens


def test_no_shifts_means_always_on_shift_as_before_shifts_existed() -> None:
    assert on_shift([], utc(2026, 12, 5, 3, 0), BERLIN)
    assert on_shift((), 0.0, BERLIN)
    assert next_shift_start([], utc(2026, 12, 5, 3, 0), BERLIN) is None


def test_a_friday_night_shift_covers_saturday_early_morning() -> None:
    friday_night = [Shift(days=(FRI,), start="22:00", end="06:00")]
    assert on_shift(friday_night, utc(2026, 12, 5, 2, 0), BERLIN)  # Sat 03:00 CET
    assert on_shift(friday_night, utc(2026, 12, 4, 21, 0), BERLIN)  # Fri 22:00: starts
    assert not on_shift(friday_night, utc(2026, 12, 5, 5, 0), BERLIN)  # Sat 06:00: over
    assert not on_shift(friday_night, utc(2026, 12, 4, 20, 59), BERLIN)  # Fri 21:59
    assert not on_shift(friday_night, utc(2026, 12, 6, 2, 0), BERLIN)  # Sun 03:00


def test_two_shifts_either_one_counts() -> None:
    split = [Shift(start="08:00", end="12:00"), Shift(start="14:00", end="18:00")]
    assert on_shift(split, utc(2026, 12, 1, 10, 0), BERLIN)  # 11:00 CET
    assert not on_shift(split, utc(2026, 12, 1, 12, 0), BERLIN)  # 13:00: the break
    assert on_shift(split, utc(2026, 12, 1, 13, 0), BERLIN)  # 14:00


def test_off_shift_until_the_earliest_next_start() -> None:
    split = [Shift(start="14:00", end="18:00"), Shift(start="08:00", end="12:00")]
    # Tue 1 Dec 13:00 CET, on the break: back at 14:00 CET = 13:00 UTC.
    assert next_shift_start(split, utc(2026, 12, 1, 12, 0), BERLIN) == utc(2026, 12, 1, 13, 0)
    # 19:00 CET: the morning shift, 08:00 CET on Wednesday = 07:00 UTC.
    assert next_shift_start(split, utc(2026, 12, 1, 18, 0), BERLIN) == utc(2026, 12, 2, 7, 0)


def test_next_start_while_on_shift_is_the_following_one() -> None:
    daily = [Shift(start="08:00", end="12:00")]
    at_start = utc(2026, 12, 1, 7, 0)  # 08:00 CET: on shift, strictly after is tomorrow
    assert on_shift(daily, at_start, BERLIN)
    assert next_shift_start(daily, at_start, BERLIN) == utc(2026, 12, 2, 7, 0)


def test_weekend_shift_from_monday_waits_for_saturday() -> None:
    weekend = [Shift(days=(SAT, SUN), start="09:00", end="17:00")]
    # Mon 30 Nov 10:00 CET -> Sat 5 Dec 09:00 CET = 08:00 UTC.
    assert next_shift_start(weekend, utc(2026, 11, 30, 9, 0), BERLIN) == utc(2026, 12, 5, 8, 0)


def test_a_night_shift_lasts_three_real_hours_when_the_clocks_spring_forward() -> None:
    night = Shift(days=(SUN,), start="01:00", end="05:00")
    # 01:00 CET = 00:00 UTC to 05:00 CEST = 03:00 UTC.
    assert next_shift_start([night], utc(2026, 3, 28, 12, 0), BERLIN) == utc(2026, 3, 29, 0, 0)
    assert real_length_s(night, utc(2026, 3, 28, 12, 0)) == 3 * HOUR
    assert on_shift([night], utc(2026, 3, 29, 2, 59, 59), BERLIN)
    assert not on_shift([night], utc(2026, 3, 29, 3, 0), BERLIN)


def test_a_night_shift_lasts_five_real_hours_when_the_clocks_fall_back() -> None:
    night = Shift(days=(SUN,), start="01:00", end="05:00")
    # 01:00 CEST = Sat 23:00 UTC to 05:00 CET = 04:00 UTC.
    assert next_shift_start([night], utc(2026, 10, 24, 12, 0), BERLIN) == utc(2026, 10, 24, 23)
    assert real_length_s(night, utc(2026, 10, 24, 12, 0)) == 5 * HOUR
    # Both 02:30s (00:30 and 01:30 UTC) are on shift.
    assert on_shift([night], utc(2026, 10, 25, 0, 30), BERLIN)
    assert on_shift([night], utc(2026, 10, 25, 1, 30), BERLIN)


def test_a_shift_starting_at_a_skipped_time_starts_at_the_jump() -> None:
    # 02:30 does not exist on 29 March: the shift starts when the clock jumps, 01:00 UTC,
    # and ends at 05:00 CEST = 03:00 UTC.
    late = [Shift(days=(SUN,), start="02:30", end="05:00")]
    assert not on_shift(late, utc(2026, 3, 29, 0, 59, 59), BERLIN)  # 01:59:59 CET
    assert on_shift(late, utc(2026, 3, 29, 1, 0), BERLIN)  # 03:00 CEST
    assert next_shift_start(late, utc(2026, 3, 28, 12, 0), BERLIN) == utc(2026, 3, 29, 1, 0)


def test_a_shift_ending_at_a_skipped_time_ends_at_the_jump() -> None:
    early = [Shift(days=(SUN,), start="01:00", end="02:30")]
    # 01:00 CET = 00:00 UTC to the jump at 01:00 UTC: the one hour the clock showed 01:xx.
    assert on_shift(early, utc(2026, 3, 29, 0, 59, 59), BERLIN)
    assert not on_shift(early, utc(2026, 3, 29, 1, 0), BERLIN)


def test_a_shift_starting_in_the_repeated_hour_does_not_break_in_two() -> None:
    # 02:30-05:00 on 25 October: from the first 02:30 (00:30 UTC) to 05:00 CET (04:00 UTC);
    # at 02:15 CET (01:15 UTC, the second pass) the clock shows less than 02:30, but the
    # shift is still on.
    late = [Shift(days=(SUN,), start="02:30", end="05:00")]
    assert not on_shift(late, utc(2026, 10, 25, 0, 29), BERLIN)
    assert on_shift(late, utc(2026, 10, 25, 1, 15), BERLIN)
    assert real_length_s(late[0], utc(2026, 10, 24, 12, 0)) == 3.5 * HOUR


def test_a_shift_far_from_utc_follows_the_local_midnight() -> None:
    monday_night = [Shift(days=(MON,), start="00:00", end="08:00")]
    # Mon 30 Nov 00:30 IST = Sun 29 Nov 19:00 UTC: already Monday in Kolkata.
    assert on_shift(monday_night, utc(2026, 11, 29, 19, 0), KOLKATA)
    # Sun 23:59 IST = Sun 18:29 UTC: still Sunday.
    assert not on_shift(monday_night, utc(2026, 11, 29, 18, 29), KOLKATA)
    assert next_shift_start(monday_night, utc(2026, 11, 29, 18, 29), KOLKATA) == utc(
        2026, 11, 29, 18, 30
    )


def test_shifts_decode_from_json_and_refuse_bad_ones() -> None:
    shifts = msgspec.json.decode(
        b'[{"days": [4], "start": "22:00", "end": "06:00"}, {"start": "08:00", "end": "12:00"}]',
        type=list[Shift],
    )
    assert shifts == [
        Shift(days=(4,), start="22:00", end="06:00"),
        Shift(days=(0, 1, 2, 3, 4, 5, 6), start="08:00", end="12:00"),
    ]
    with pytest.raises(msgspec.ValidationError, match="'HH:MM'"):
        msgspec.json.decode(b'[{"start": "8:00", "end": "12:00"}]', type=list[Shift])
    with pytest.raises(msgspec.ValidationError, match="unknown field `until`"):
        msgspec.json.decode(b'[{"start": "08:00", "end": "12:00", "until": 1}]', type=list[Shift])


MINUTE_OF_DAY = st.integers(0, 1439).map(lambda m: f"{m // 60:02d}:{m % 60:02d}")


@given(
    start=MINUTE_OF_DAY,
    end=MINUTE_OF_DAY,
    days=st.sets(st.integers(0, 6), min_size=1).map(tuple),
    t=st.integers(int(utc(2026, 1, 1)), int(utc(2027, 1, 1))),
)
def test_the_next_start_is_later_and_on_shift(
    start: str, end: str, days: tuple[int, ...], t: int
) -> None:
    if start == end:
        return
    shifts = [Shift(days=days, start=start, end=end)]
    begins = next_shift_start(shifts, t, BERLIN)
    assert begins is not None
    # Within a week, or two when this week's only start fell into the spring-forward gap.
    assert t < begins <= t + 15 * 86400
    assert on_shift(shifts, begins, BERLIN)
