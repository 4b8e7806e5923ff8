"""When a technician works: weekly shifts in the city's local time (pure, time passed in).

Dispatch offers a booking only to a technician on shift, and says "off shift until ..."
for the others. A technician with no shifts configured is always on shift: that is how
Doorstep behaved before shifts existed, so a deployment that configures none sees no change.

How a shift maps to real time on the days the clocks change is ``realtime/local_time.py``'s
rule (a 01:00-05:00 shift lasts 3 real hours on the spring-forward day, 5 on the fall-back
day; a boundary at a skipped local time is the instant of the jump).
"""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from realtime.local_time import LocalWindow


class Shift(LocalWindow, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One weekly shift: ``days`` (0 = Monday .. 6 = Sunday, default every day) are the days
    it starts; ``end`` at or before ``start`` ends the next day (a Friday 22:00-06:00 shift
    covers Saturday 03:00)."""


def on_shift(shifts: Sequence[Shift], t: float, zone: ZoneInfo) -> bool:
    """Whether ``t`` (Unix seconds) falls in any of ``shifts``; no shifts: always on shift."""
    if not shifts:
        return True
    return any(shift.covers(t, zone) for shift in shifts)


def next_shift_start(shifts: Sequence[Shift], t: float, zone: ZoneInfo) -> float | None:
    """The first instant strictly after ``t`` at which one of ``shifts`` starts.

    For a technician off shift at ``t`` that is when they come on shift ("off shift until
    ..."). None when there are no shifts: always on shift, nothing to wait for.
    """
    starts = [start for shift in shifts if (start := shift.next_start(t, zone)) is not None]
    return min(starts, default=None)
