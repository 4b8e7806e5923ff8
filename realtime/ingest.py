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
    """Highest seq accepted for one technician, and the oldest fix refused for now.

    Everything at or below ``highest`` is a duplicate. ``hole`` is the lowest seq the hub
    refused for a reason that may pass (``server_busy``, ``batch_too_large``, a batch refused
    because of another point): while it is set, frames carrying seqs above it are refused
    ``server_busy`` naming it, until the client resends from it. So ``highest``, and with it
    every ack, never passes a fix the hub did not store, unless that fix itself was refused
    for good (an error naming its seq). The hub forgets the hole when the technician's last
    connection ends: a client that reconnects resends from the hub's first ack.
    """

    def __init__(self, highest: int = -1) -> None:
        self.highest = highest
        self.hole: int | None = None

    def forget_hole(self) -> None:
        self.hole = None

    def accept(
        self,
        message: Location | Batch,
        now: float,
        limits: FixLimits,
        room: int | None = None,
    ) -> list[Location]:
        """The new fixes of a frame, oldest first, or ProtocolError if the frame is refused.

        ``room`` is how many more fixes the hub can queue for the history (None: no bound);
        a frame with more fresh fixes than that is refused ``server_busy`` naming its first.

        A single ``location`` at or below the highest seq is refused as ``stale_seq`` (the
        client drops it from its buffer). In a ``batch`` such points are skipped silently:
        an offline flush after a lost ack legitimately overlaps what was already stored. A
        batch is all or nothing, so a bad point never half-applies it.
        """
        self._settle()  # the highest may have moved (another hub's fixes, read at connect)
        if isinstance(message, Location):
            return self._accept_location(message, now, limits, room)
        return self._accept_batch(message.points, now, limits, room)

    def _accept_location(
        self, fix: Location, now: float, limits: FixLimits, room: int | None
    ) -> list[Location]:
        try:
            check_fix(fix, now, limits)
        except ProtocolError as exc:
            if exc.seq is not None and exc.seq == self.hole:
                self.hole = None  # the fix the hub waited for is refused for good, named
            raise
        if fix.seq <= self.highest:
            raise ProtocolError(
                ErrorCode.STALE_SEQ,
                f"seq {fix.seq} is not above the highest accepted seq {self.highest}; "
                "it is already stored or superseded",
                fix.seq,
            )
        self._check_hole(fix.seq)
        if room is not None and room < 1:
            raise self._busy(fix.seq)
        self.highest = fix.seq
        self._settle()
        return [fix]

    def _accept_batch(
        self, points: list[Location], now: float, limits: FixLimits, room: int | None
    ) -> list[Location]:
        if len(points) > limits.max_batch_points:
            first = self._first_fresh(points)
            self._latch(first)
            raise ProtocolError(
                ErrorCode.BATCH_TOO_LARGE,
                f"batch has {len(points)} points; the limit is {limits.max_batch_points}; "
                "resend in smaller batches",
                first,
            )
        previous = -1
        for index, point in enumerate(points):
            try:
                check_fix(point, now, limits)
            except ProtocolError as exc:
                # This point is refused for good (the error names it); the others are not.
                if exc.seq is not None and exc.seq == self.hole:
                    self.hole = None
                self._latch(self._first_fresh(points, but=index))
                raise ProtocolError(exc.code, f"points[{index}]: {exc.message}", exc.seq) from None
            if point.seq <= previous:
                self._latch(self._first_fresh(points))
                raise ProtocolError(
                    ErrorCode.SEQ_NOT_INCREASING,
                    f"points[{index}]: seq {point.seq} does not increase (previous {previous})",
                    point.seq,
                )
            previous = point.seq
        fresh = [p for p in points if p.seq > self.highest]
        if not fresh:
            return fresh
        self._check_hole(fresh[0].seq)
        if room is not None and len(fresh) > room:
            raise self._busy(fresh[0].seq)
        self.highest = fresh[-1].seq
        self._settle()
        return fresh

    def _first_fresh(self, points: list[Location], but: int | None = None) -> int | None:
        """The lowest seq of the frame the hub has not stored (skipping index ``but``)."""
        for index, point in enumerate(points):
            if index != but and 0 <= point.seq <= MAX_SEQ and point.seq > self.highest:
                return point.seq
        return None

    def _latch(self, seq: int | None) -> None:
        if seq is not None and seq > self.highest:
            self.hole = seq if self.hole is None else min(self.hole, seq)

    def _settle(self) -> None:
        if self.hole is not None and self.hole <= self.highest:
            self.hole = None

    def _check_hole(self, first_fresh: int) -> None:
        """Refuse a frame that would jump over the fix the hub is waiting for."""
        if self.hole is not None and first_fresh > self.hole:
            raise ProtocolError(
                ErrorCode.SERVER_BUSY,
                f"fix {self.hole} was refused earlier and is not stored; resend from seq "
                f"{self.hole} (nothing after it is accepted before it)",
                self.hole,
            )

    def _busy(self, seq: int) -> ProtocolError:
        self._latch(seq)
        return ProtocolError(
            ErrorCode.SERVER_BUSY,
            f"the hub cannot store fixes right now; keep fix {seq} and everything after it "
            "buffered and resend from it",
            seq,
        )
