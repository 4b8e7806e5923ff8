"""Technician ingest rules: what makes a fix acceptable, and seq bookkeeping.

Pure: the caller passes the current time and gets accepted fixes or a ProtocolError. The hub
keeps one ``SeqTracker`` per technician (not per connection), so a technician that reconnects
resumes where the hub's durable state says, with no loss and no double counting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from realtime.protocol import MAX_SEQ, Batch, ErrorCode, Location, ProtocolError

MAX_ACCURACY_M = 50_000.0
MAX_SPEED_MS = 150.0  # 540 km/h: nothing on a road; bigger is a broken sensor


@dataclass(frozen=True)
class FixLimits:
    max_future_skew_s: float
    max_fix_age_s: float
    max_batch_points: int


def check_coordinates(lat: float, lon: float, seq: int | None = None) -> None:
    """Raise ProtocolError unless lat/lon are finite WGS84 degrees."""
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"lat {lat} is outside -90..90", seq)
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"lon {lon} is outside -180..180", seq)


def check_fix(fix: Location, now: float, limits: FixLimits) -> None:
    """Raise ProtocolError unless the fix is in range and in time."""
    seq = fix.seq
    if not 0 <= seq <= MAX_SEQ:
        raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"seq {seq} is outside 0..2^53-1", seq)
    for name in ("t", "lat", "lon", "acc", "speed", "heading"):
        value = getattr(fix, name)
        if value is not None and not math.isfinite(value):
            raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"{name} must be a finite number", seq)
    check_coordinates(fix.lat, fix.lon, seq)
    if fix.acc is not None and not 0.0 <= fix.acc <= MAX_ACCURACY_M:
        raise ProtocolError(
            ErrorCode.OUT_OF_RANGE, f"acc {fix.acc} is outside 0..{MAX_ACCURACY_M:g} m", seq
        )
    if fix.speed is not None and not 0.0 <= fix.speed <= MAX_SPEED_MS:
        raise ProtocolError(
            ErrorCode.OUT_OF_RANGE, f"speed {fix.speed} is outside 0..{MAX_SPEED_MS:g} m/s", seq
        )
    if fix.heading is not None and not 0.0 <= fix.heading <= 360.0:
        raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"heading {fix.heading} is outside 0..360", seq)
    if fix.t > now + limits.max_future_skew_s:
        raise ProtocolError(
            ErrorCode.TIMESTAMP_IN_FUTURE,
            f"t {fix.t} is {fix.t - now:.0f} s in the future (allowed skew "
            f"{limits.max_future_skew_s:g} s); check the device clock",
            seq,
        )
    if fix.t < now - limits.max_fix_age_s:
        raise ProtocolError(
            ErrorCode.TIMESTAMP_TOO_OLD,
            f"t {fix.t} is {now - fix.t:.0f} s old (limit {limits.max_fix_age_s:g} s)",
            seq,
        )


class SeqTracker:
    """Highest seq accepted for one technician; everything at or below it is a duplicate."""

    def __init__(self, highest: int = -1) -> None:
        self.highest = highest

    def accept(self, message: Location | Batch, now: float, limits: FixLimits) -> list[Location]:
        """The new fixes of a frame, oldest first, or ProtocolError if the frame is refused.

        A single ``location`` at or below the highest seq is refused as ``stale_seq`` (the
        client drops it from its buffer). In a ``batch`` such points are skipped silently:
        an offline flush after a lost ack legitimately overlaps what was already stored. A
        batch is all or nothing, so a bad point never half-applies it.
        """
        if isinstance(message, Location):
            check_fix(message, now, limits)
            if message.seq <= self.highest:
                raise ProtocolError(
                    ErrorCode.STALE_SEQ,
                    f"seq {message.seq} is not above the highest accepted seq {self.highest}; "
                    "it is already stored or superseded",
                    message.seq,
                )
            self.highest = message.seq
            return [message]
        points = message.points
        if len(points) > limits.max_batch_points:
            raise ProtocolError(
                ErrorCode.BATCH_TOO_LARGE,
                f"batch has {len(points)} points; the limit is {limits.max_batch_points}",
            )
        previous = -1
        for index, point in enumerate(points):
            try:
                check_fix(point, now, limits)
            except ProtocolError as exc:
                raise ProtocolError(exc.code, f"points[{index}]: {exc.message}", exc.seq) from None
            if point.seq <= previous:
                raise ProtocolError(
                    ErrorCode.SEQ_NOT_INCREASING,
                    f"points[{index}]: seq {point.seq} does not increase (previous {previous})",
                    point.seq,
                )
            previous = point.seq
        fresh = [p for p in points if p.seq > self.highest]
        if fresh:
            self.highest = fresh[-1].seq
        return fresh
