"""The technician's offline buffer: fixes the hub has not acknowledged yet, oldest first.

Pure (no I/O, no clock, no asyncio), so the rules that make "no loss, no duplicates" true
are tested with plain synchronous tests:

- A fix leaves the buffer only when the hub acknowledges it (``ack(seq)``: everything up to
  ``seq`` is durably stored) or when the buffer is full and it is the oldest (counted in
  ``dropped``) or when the hub refused it as invalid (``reject``, counted in ``rejected``).
  Sending a fix does not remove it: a socket can die with frames in flight.
- The buffer keeps a send cursor: the fixes at its front have been sent on the current
  connection, the rest not yet. ``rewind()`` (a new connection, a refused frame, an ack that
  never came) marks everything unsent again; resending is safe because the hub skips batch
  points at or below the highest seq it has, so an overlap never stores a fix twice.
- After a rewind, frames are ``batch`` frames until the whole buffer has gone out again:
  a single ``location`` at or below the hub's highest seq is refused as ``stale_seq``,
  while an overlapping ``batch`` is fine.
- The buffer also counts the frames in flight (sent, not yet covered by an ack): the client
  keeps that number small, so a hub that paces frames over its rate (back-pressure) slows
  the client down instead of collecting a backlog until it closes the socket as a flood.
  Fixes that wait meanwhile go out together in the next, bigger batch.
- The hub never acks past a fix it did not store (it refuses later seqs until that one is
  resent), so trimming by the ack is safe.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

import msgspec

from realtime.protocol import Location

# The hub's default (DOORSTEP_MAX_BATCH_POINTS); a bigger batch is refused whole. A hub
# configured lower answers batch_too_large and the client halves its batches.
MAX_BATCH_POINTS = 500


@dataclass(frozen=True, slots=True)
class Frame:
    """What to send next: ``points`` oldest first, as a ``batch`` when ``batch`` is true."""

    points: list[Location]
    batch: bool


class OfflineBuffer:
    """Bounded FIFO of unacknowledged fixes with a send cursor (see the module docstring).

    ``limit`` bounds memory during a long dead zone: at one fix a second, 10,000 fixes are
    nearly three hours. When it is full the *oldest* fix goes: the newest positions matter
    most to the customer and the operator, and the count of lost ones is kept in
    ``dropped`` so the app can report it.
    """

    def __init__(self, limit: int, max_batch: int = MAX_BATCH_POINTS) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.limit = limit
        self.max_batch = max_batch
        self.dropped = 0  # oldest fixes pushed out by a full buffer, never sent or unacked
        self.rejected = 0  # fixes the hub refused as invalid (they can never be stored)
        self.acked = -1  # highest seq the hub said is stored
        self._fixes: deque[Location] = deque()
        self._sent = 0  # how many fixes at the front went out on the current connection
        self._frames: deque[int] = deque()  # last seq of each frame in flight, oldest first
        self._needs_batch = True  # until everything buffered at the last rewind is resent

    def __len__(self) -> int:
        return len(self._fixes)

    @property
    def unsent(self) -> int:
        """Fixes not sent on the current connection."""
        return len(self._fixes) - self._sent

    @property
    def in_flight(self) -> int:
        """Fixes sent on the current connection and not acknowledged yet."""
        return self._sent

    @property
    def frames_in_flight(self) -> int:
        """Frames sent since the last rewind whose fixes no ack has covered yet."""
        return len(self._frames)

    @property
    def last_seq(self) -> int | None:
        """The newest buffered seq, or None when the buffer is empty."""
        return self._fixes[-1].seq if self._fixes else None

    def seqs(self) -> list[int]:
        return [fix.seq for fix in self._fixes]

    def append(self, fix: Location) -> None:
        """Add the newest fix; its seq must be above every buffered one (and every ack)."""
        if fix.seq <= self.acked or (self._fixes and fix.seq <= self._fixes[-1].seq):
            raise ValueError(f"seq {fix.seq} does not increase")
        if len(self._fixes) >= self.limit:
            self._pop_front()
            self.dropped += 1
        self._fixes.append(fix)

    def ack(self, seq: int) -> int:
        """The hub stored everything up to ``seq``: drop those fixes; returns how many."""
        if seq > self.acked:
            self.acked = seq
        while self._frames and self._frames[0] <= seq:
            self._frames.popleft()
        removed = 0
        while self._fixes and self._fixes[0].seq <= seq:
            self._pop_front()
            removed += 1
        return removed

    def rewind(self) -> None:
        """Mark every buffered fix unsent: resend from the last ack, as batches."""
        self._sent = 0
        self._needs_batch = True
        self._frames.clear()  # what was in flight is sent again; refused frames get no ack

    def holds(self, seq: int) -> bool:
        """Whether the fix ``seq`` is still buffered (not acked, dropped or rejected)."""
        return any(fix.seq == seq for fix in self._fixes)

    def reject(self, seq: int) -> bool:
        """The hub refused the fix ``seq`` as invalid: remove it for good, then rewind.

        Without this one bad fix would block the all-or-nothing batches behind it forever.
        """
        for index, fix in enumerate(self._fixes):
            if fix.seq == seq:
                del self._fixes[index]
                self.rejected += 1
                self.rewind()
                return True
        return False

    def next_frame(self) -> Frame | None:
        """The next unsent fixes (at most ``max_batch``), now counted as sent; None if none."""
        if self.unsent == 0:
            return None
        points = list(itertools.islice(self._fixes, self._sent, self._sent + self.max_batch))
        self._sent += len(points)
        self._frames.append(points[-1].seq)
        batch = self._needs_batch or len(points) > 1
        if self.unsent == 0:
            # Everything buffered at the rewind is out again: the hub's highest seq is now
            # below every fix added from here on, so a lone new fix can be a plain location.
            self._needs_batch = False
        return Frame(points, batch)

    def renumber(self, first_seq: int) -> int:
        """Give the buffered fixes consecutive seqs from ``first_seq``; returns the next seq.

        For a client whose seq counter fell behind the hub's (a lost or reset seq store):
        the hub would skip these fixes as already stored. Rewinds, since every seq changed.
        """
        renumbered = deque(
            msgspec.structs.replace(fix, seq=first_seq + index)
            for index, fix in enumerate(self._fixes)
        )
        self._fixes = renumbered
        self.rewind()
        return first_seq + len(renumbered)

    def _pop_front(self) -> None:
        self._fixes.popleft()
        if self._sent:
            self._sent -= 1
