"""Weekly windows of local wall-clock time ("Mon-Fri 22:00-06:00") as real instants.

Shifts (``realtime/shifts.py``) and the fee tariff's night and peak hours
(``realtime/tariff.py``) are both written in a city's local time but applied to Unix
seconds. This module is the one place that turns the first into the second, so that a
shift and a night surcharge agree on what "22:00" means on a day the clocks change.

A window that starts on a listed weekday opens at the first instant the local clock shows
``start`` on that date and closes at the last instant it shows ``end`` (on the same date, or
the next one when the window crosses midnight): an interval of real time, half open. That
rule decides every daylight-saving case the same way:

- spring forward (02:00 -> 03:00): a 01:00-05:00 window lasts 3 real hours; a boundary
  inside the missing hour (02:30) is the instant of the jump, so it does not crash and
  does not move the window by an hour; a window wholly inside the missing hour is empty.
- fall back (03:00 -> 02:00): 01:00-05:00 lasts 5 real hours; 02:30 happens twice and
  both instants are inside; a window that starts at 02:30 opens at the first 02:30 and
  stays open through the repeated hour (it does not close and reopen).

Pure: no clock, no I/O of its own (``zoneinfo`` reads the zone's rules once and caches).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec

MINUTES_PER_DAY = 24 * 60
ALL_WEEK: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)  # datetime.weekday(): 0 = Monday
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
# How far ahead next_start looks: a week, and one more in case this week's only occurrence
# fell wholly into a spring-forward gap (and so never opens).
_LOOKAHEAD_DAYS = 15


def parse_hhmm(text: str, *, allow_end_of_day: bool = False) -> int:
    """Minutes since local midnight of an "HH:MM" string (24-hour clock, two digits each).

    "24:00" (the end of the day) only where ``allow_end_of_day``: a window's end, so that a
    window can cover a whole day ("00:00"-"24:00").
    """
    if allow_end_of_day and text == "24:00":
        return MINUTES_PER_DAY
    match = _HHMM.match(text) if isinstance(text, str) else None
    if match is None:
        hint = " or 24:00" if allow_end_of_day else ""
        raise ValueError(f"a local time is 'HH:MM' from 00:00 to 23:59{hint}, not {text!r}")
    return int(match[1]) * 60 + int(match[2])


class LocalWindow(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A window of local time that opens on each of ``days`` at ``start`` and closes at
    ``end``; ``end`` at or before ``start`` means it closes the next day (22:00-06:00 on
    Friday covers Saturday 03:00). The weekday is always the day the window opens."""

    start: str
    end: str
    days: tuple[int, ...] = ALL_WEEK

    def __post_init__(self) -> None:
        start, end = self.minutes()
        if start == end:
            raise ValueError(
                f"window {self.start}-{self.end} is ambiguous (empty or a whole day?): "
                "use 00:00-24:00 for a whole day"
            )
        if not self.days:
            raise ValueError("a window needs at least one weekday (0 = Monday .. 6 = Sunday)")
        for day in self.days:
            if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
                raise ValueError(f"a weekday is 0 (Monday) to 6 (Sunday), not {day!r}")
        if len(set(self.days)) != len(self.days):
            raise ValueError(f"weekdays listed twice in {list(self.days)}")

    def minutes(self) -> tuple[int, int]:
        """(start, end) in minutes since local midnight; end may be 1440 ("24:00")."""
        return parse_hhmm(self.start), parse_hhmm(self.end, allow_end_of_day=True)

    @property
    def crosses_midnight(self) -> bool:
        start, end = self.minutes()
        return end < start

    def occurrence(self, opens_on: date, zone: ZoneInfo) -> tuple[float, float]:
        """The real interval [open, close) in Unix seconds of the window opening on the local
        date ``opens_on`` (whether or not that date's weekday is in ``days``)."""
        start, end = self.minutes()
        closes_on = opens_on + timedelta(days=1) if end < start else opens_on
        opens = first_instant_showing(opens_on, start, zone)
        closes = last_instant_showing(closes_on, end, zone)
        return opens, max(opens, closes)

    def covers(self, t: float, zone: ZoneInfo) -> bool:
        """Whether the instant ``t`` (Unix seconds) is inside the window."""
        today = local_date(t, zone)
        # A window lasts at most a day (and a DST hour), so only one that opened yesterday
        # or today can still be open.
        for opens_on in (today - timedelta(days=1), today):
            if opens_on.weekday() in self.days:
                opens, closes = self.occurrence(opens_on, zone)
                if opens <= t < closes:
                    return True
        return False

    def next_start(self, t: float, zone: ZoneInfo) -> float | None:
        """The first instant strictly after ``t`` at which the window opens (windows that
        fall wholly into a spring-forward gap never open and are skipped)."""
        today = local_date(t, zone)
        for ahead in range(_LOOKAHEAD_DAYS):
            opens_on = today + timedelta(days=ahead)
            if opens_on.weekday() not in self.days:
                continue
            opens, closes = self.occurrence(opens_on, zone)
            if opens > t and closes > opens:
                return opens
        return None


def local_date(t: float, zone: ZoneInfo) -> date:
    """The calendar date in ``zone`` at the instant ``t``."""
    return local_datetime(t, zone).date()


def local_datetime(t: float, zone: ZoneInfo) -> datetime:
    """The aware local datetime at ``t`` (its ``isoformat()`` carries the offset)."""
    if not math.isfinite(t):
        raise ValueError(f"a time is finite Unix seconds, not {t}")
    return datetime.fromtimestamp(t, zone)


def first_instant_showing(day: date, minute: int, zone: ZoneInfo) -> float:
    """The first instant at which the local clock reads ``minute`` on ``day``: the earlier
    of two when the clocks fall back, the instant of the jump when that time is skipped."""
    return _resolve(day, minute, zone, later=False)


def last_instant_showing(day: date, minute: int, zone: ZoneInfo) -> float:
    """Like ``first_instant_showing``, but the later of two when the clocks fall back."""
    return _resolve(day, minute, zone, later=True)


def _resolve(day: date, minute: int, zone: ZoneInfo, *, later: bool) -> float:
    wall = datetime.combine(day, time()) + timedelta(minutes=minute)  # 1440: next midnight
    # PEP 495: fold=0 applies the offset in force before a transition, fold=1 the one after.
    before = wall.replace(tzinfo=zone, fold=0).timestamp()
    after = wall.replace(tzinfo=zone, fold=1).timestamp()
    if before == after:
        return before  # an ordinary time: one instant
    if before < after:
        return after if later else before  # fall back: the wall time happens twice
    return _transition_between(after, before, zone)  # spring forward: a skipped time


def _transition_between(lo: float, hi: float, zone: ZoneInfo) -> float:
    """The instant in (lo, hi] where the zone's offset changes (a gap in its wall clock).

    Time zone transitions fall on whole seconds and a gap is at most hours long, so a
    bisection over seconds takes a dozen steps; zoneinfo has no public list of transitions.
    """
    low, high = math.floor(lo), math.ceil(hi)
    offset_before = _offset(low, zone)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(middle, zone) == offset_before:
            low = middle
        else:
            high = middle
    return float(high)


def _offset(t: float, zone: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(t, zone).utcoffset()
