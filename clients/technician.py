"""The technician's client: stream fixes through dead zones, raise an SOS that is never lost.

``send_fix`` is synchronous and never waits for the network: it numbers the fix, puts it in
the offline buffer (clients/_buffer.py) and wakes a background sender. The sender streams
the buffer to the hub and the hub's ``ack {seq}`` (sent after the durable write) trims it.
On every (re)connect the hub's first ``ack`` says up to where it has stored, and the sender
starts again from there with ``batch`` frames: no fix lost, none stored twice.

Example::

    async with TechnicianClient("https://hub.example", token) as tech:
        tech.send_fix(time.time(), 52.52, 13.405, acc=8)
        receipt = await tech.sos(note="aggressive dog")  # returns only once stored
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from clients._buffer import OfflineBuffer
from clients._client import BaseClient, TokenProvider
from clients._connection import Backoff
from clients._events import DEFAULT_EVENT_LIMIT
from clients._sos import SosChannel, SosReceipt
from clients.errors import NotConnectedError
from clients.seqstore import MemorySeqStore, SeqStore
from realtime import protocol as wire
from realtime.protocol import ErrorCode

log = logging.getLogger("doorstep.clients")

TechnicianEvent = wire.BookingMessage | wire.SosStatus | wire.CheckPrompt

# The same ranges the hub enforces (realtime/ingest.py): a fix outside them is a bug in the
# app, better raised at the call than refused by the hub minutes later.
MAX_ACCURACY_M = 50_000.0
MAX_SPEED_MS = 150.0

# Error codes that condemn one fix for good: resending it can never succeed, and inside an
# all-or-nothing batch it would block every fix behind it.
_FIX_REFUSED = frozenset(
    {
        ErrorCode.OUT_OF_RANGE,
        ErrorCode.INVALID_FIELD,
        ErrorCode.TIMESTAMP_IN_FUTURE,
        ErrorCode.TIMESTAMP_TOO_OLD,
    }
)
# The hub dropped a frame it may accept later: resend from the last ack, after a pause.
_TRY_AGAIN = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.SERVER_BUSY, ErrorCode.INTERNAL_ERROR})
MAX_FRAME_INTERVAL_S = 5.0  # the slowest a rate-limited client sends: still live enough
_FINAL_BOOKING = frozenset({"completed", "cancelled"})


@dataclass(frozen=True, slots=True)
class BufferStats:
    """The offline buffer at a glance (for an app's diagnostics screen)."""

    buffered: int  # not yet acknowledged by the hub
    in_flight: int  # of those, sent on the current connection
    acked_seq: int  # highest seq the hub has stored (-1: none yet)
    next_seq: int  # the seq the next fix gets
    dropped: int  # oldest fixes lost to a full buffer
    rejected: int  # fixes the hub refused as invalid


def token_subject(token: str) -> str | None:
    """The ``sub`` claim of a JWT, read without verifying it (the hub verifies)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["sub"])
    except (IndexError, KeyError, ValueError, TypeError):
        return None


class TechnicianClient(BaseClient[TechnicianEvent]):
    """Streams fixes and raises SOS for one technician (the token's ``sub``).

    Events (``async for event in client`` or ``add_listener``): ``BookingMessage`` (a booking
    assigned to this technician was created or changed; the active ones are also kept in
    ``bookings``), ``SosStatus`` (one's own SOS changed) and ``CheckPrompt`` (the hub asks
    "are you OK?"; answer with ``answer_check``).
    """

    _path = "/v1/ws/technician"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        buffer_limit: int = 10_000,
        seq_store: SeqStore | None = None,
        max_frames_per_s: float = 10.0,
        max_frames_in_flight: int = 4,
        ack_timeout_s: float = 10.0,
        sos_ack_timeout_s: float = 2.0,
        sos_deadline_s: float = 60.0,
        ws_base_url: str | None = None,
        backoff: Backoff | None = None,
        http_timeout_s: float = 10.0,
        event_limit: int = DEFAULT_EVENT_LIMIT,
        token_provider: TokenProvider | None = None,
    ) -> None:
        super().__init__(
            base_url,
            token,
            ws_base_url=ws_base_url,
            backoff=backoff,
            http_timeout_s=http_timeout_s,
            event_limit=event_limit,
            token_provider=token_provider,
        )
        self.technician_id = token_subject(token)
        self.buffer = OfflineBuffer(buffer_limit)
        self.seq_store: SeqStore = seq_store or MemorySeqStore()
        last = self.seq_store.load()
        self._next_seq = 0 if last is None else last + 1
        # Half the hub's default 20 frames/s: fixes arriving faster are coalesced into one
        # batch per frame instead of earning rate_limited errors (and a 1008 in the end).
        self._base_interval_s = 1.0 / max_frames_per_s
        # A hub configured stricter than that answers rate_limited: then the interval
        # doubles (up to MAX_FRAME_INTERVAL_S) and creeps back as acks flow, so the client
        # settles under the hub's limit instead of collecting refusals until a 1008.
        self._frame_interval_s = self._base_interval_s
        # The hub delays frames over its rate instead of refusing them (back-pressure) and
        # closes a client whose backlog grows too long: with at most this many frames
        # unacknowledged the client follows the hub's pace, fixes coalescing meanwhile.
        self.max_frames_in_flight = max(1, max_frames_in_flight)
        self._leave_hole = False  # the hub waits for a fix this client no longer has
        # Acks follow the hub's batched write (50 ms); none for this long means the frames
        # in flight were lost somewhere: resend them (overlap is harmless).
        self.ack_timeout_s = ack_timeout_s
        self.bookings: dict[str, dict[str, Any]] = {}
        self.errors: Counter[str] = Counter()  # error codes the hub answered, for diagnostics
        self._sos = SosChannel(
            self.socket, self.http, ack_timeout_s=sos_ack_timeout_s, deadline_s=sos_deadline_s
        )
        self._checks: dict[str, asyncio.Future[None]] = {}
        self._wakeup = asyncio.Event()  # new fixes, a rewind, or the end of a pause
        self._progress = asyncio.Event()  # an ack trimmed the buffer (for flush)
        self._resumed = False  # the current connection's first ack has arrived
        self._pause_until = 0.0
        self._last_progress = time.monotonic()

    # ------------------------------------------------------------------ fixes

    def send_fix(
        self,
        t: float,
        lat: float,
        lon: float,
        acc: float | None = None,
        speed: float | None = None,
        heading: float | None = None,
    ) -> int:
        """Queue one GPS fix and return its seq; never waits for the network.

        ``t`` is the fix's own time (Unix seconds, from the GPS), not the time of sending:
        fixes sent late after a dead zone must keep the time they were taken.
        """
        _check_fix(t, lat, lon, acc, speed, heading)
        seq = self._next_seq
        fix = wire.Location(seq=seq, t=t, lat=lat, lon=lon, acc=acc, speed=speed, heading=heading)
        self.buffer.append(fix)
        self._next_seq = seq + 1
        self.seq_store.save(seq)
        self._wakeup.set()
        return seq

    @property
    def stats(self) -> BufferStats:
        return BufferStats(
            buffered=len(self.buffer),
            in_flight=self.buffer.in_flight,
            acked_seq=self.buffer.acked,
            next_seq=self._next_seq,
            dropped=self.buffer.dropped,
            rejected=self.buffer.rejected,
        )

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the hub has acknowledged every buffered fix; False at ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self.buffer):
            self._progress.clear()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            try:
                await asyncio.wait_for(self._progress.wait(), left)
            except TimeoutError:
                return False
        return True

    # ------------------------------------------------------------------ safety

    async def sos(
        self,
        note: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        *,
        acc: float | None = None,
        sos_id: str | None = None,
    ) -> SosReceipt:
        """Raise an SOS; returns only once the hub has stored it (see clients/_sos.py).

        Tries the socket, falls back to ``POST /v1/sos`` with the same id, retries until
        ``sos_deadline_s`` and then raises ``SosNotDelivered``. Pass ``sos_id`` to retry an
        earlier press (the same id is the same incident).
        """
        sos = wire.Sos(
            id=sos_id or new_sos_id(), t=time.time(), lat=lat, lon=lon, acc=acc, note=note
        )
        return await self._sos.raise_sos(sos)

    async def cancel_sos(self, sos_id: str, note: str | None = None) -> SosReceipt:
        """Take back a pocket press: only while unacknowledged and within the grace period.

        Raises RequestError (``illegal_transition``) when it is too late to cancel.
        """
        return await self._sos.cancel(sos_id, note)

    async def answer_check(self, check_id: str, timeout: float = 5.0) -> None:
        """Answer "are you OK?" with yes; returns once the hub has stored the answer."""
        waiter = self._checks.setdefault(check_id, asyncio.get_running_loop().create_future())
        try:
            if not await self.socket.send(wire.encode(wire.CheckOk(id=check_id))):
                raise NotConnectedError("not connected; answer the check when back online")
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        finally:
            self._checks.pop(check_id, None)

    # ------------------------------------------------------------------ socket hooks

    async def _opened(self, ws: ClientConnection) -> Any:
        # Nothing is sent before the hub's first ack: it says where to resume.
        self._resumed = False
        self._leave_hole = False
        return self._stream(ws)

    def _closed(self) -> None:
        # Frames in flight on a dead connection may or may not have been stored: count them
        # as unsent; the next connection's first ack says which ones the hub has.
        self._resumed = False
        self.buffer.rewind()

    async def _received(self, message: Any) -> None:
        self._sos.on_message(message)
        if isinstance(message, wire.Ack):
            self._on_ack(message.seq)
        elif isinstance(message, wire.Error):
            self._on_error(message)
        elif isinstance(message, wire.BookingMessage):
            self._on_booking(message.booking)
            self._emit(message)
        elif isinstance(message, wire.SosStatus | wire.CheckPrompt):
            self._emit(message)
        elif isinstance(message, wire.CheckAck):
            waiter = self._checks.get(message.id)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _on_ack(self, seq: int) -> None:
        # No await in this method: the buffer, the seq counter and the sender's flags change
        # together, so the sender never sees a half-applied resume.
        if not self._resumed:
            if seq >= self._next_seq:
                # The hub has seqs this client never handed out: its counter was lost (no
                # persistent seq store, a reinstall). Number what is buffered above the hub's,
                # or the hub would skip it as already stored.
                log.warning(
                    "seq counter (%d) is behind the hub's stored seq %d; renumbering %d "
                    "buffered fixes (persist the counter with a SeqStore)",
                    self._next_seq,
                    seq,
                    len(self.buffer),
                )
                self._next_seq = self.buffer.renumber(seq + 1)
                self.seq_store.save(self._next_seq - 1)
            self.buffer.ack(seq)
            self.buffer.rewind()
            self._resumed = True
            self._last_progress = time.monotonic()
        elif self.buffer.ack(seq):
            self._last_progress = time.monotonic()
            self._frame_interval_s = max(self._base_interval_s, self._frame_interval_s * 0.9)
        self._progress.set()
        self._wakeup.set()

    def _on_error(self, error: wire.Error) -> None:
        self.errors[error.code] += 1
        code = error.code
        if code in _FIX_REFUSED and error.seq is not None:
            if self.buffer.reject(error.seq):
                log.error("the hub refused fix %d for good: %s", error.seq, error.message)
        elif code in _TRY_AGAIN:
            # The hub acks nothing past a seq it refused for now (error.seq): the buffer
            # still holds it and everything after it; resend from the oldest after a pause.
            seq = error.seq
            if seq is not None and seq > self.buffer.acked and not self.buffer.holds(seq):
                # ...unless this client dropped that fix (a full buffer): the hub keeps
                # waiting for it on this connection, so reconnect and resume from its ack.
                log.warning("the hub waits for fix %d, no longer buffered; reconnecting", seq)
                self._leave_hole = True
            if code == ErrorCode.RATE_LIMITED:
                self._frame_interval_s = min(self._frame_interval_s * 2, MAX_FRAME_INTERVAL_S)
            self._retry_later(1.0)
        elif code in (ErrorCode.BATCH_TOO_LARGE, ErrorCode.FRAME_TOO_LARGE):
            # A hub configured below the default batch limit: halve until it fits.
            self.buffer.max_batch = max(1, self.buffer.max_batch // 2)
            self.buffer.rewind()
        elif code in (ErrorCode.STALE_SEQ, ErrorCode.SEQ_NOT_INCREASING):
            # Already stored (or another device uses this id): resend as batches, where the
            # hub skips what it has; the next ack trims it.
            self.buffer.rewind()
        elif code != ErrorCode.SOS_NOT_STORED:
            log.warning("hub error %s: %s", code, error.message)
            if code in _FIX_REFUSED or code in (ErrorCode.INVALID_JSON, ErrorCode.UNKNOWN_TYPE):
                # A refused frame we cannot pin on one fix: resend, but slowly.
                self._retry_later(5.0)
        self._wakeup.set()

    def _on_booking(self, booking: dict[str, Any]) -> None:
        booking_id = str(booking.get("id"))
        mine = self.technician_id is None or booking.get("technician_id") == self.technician_id
        if mine and booking.get("status") not in _FINAL_BOOKING:
            self.bookings[booking_id] = booking
        else:
            self.bookings.pop(booking_id, None)

    def _retry_later(self, pause_s: float) -> None:
        self.buffer.rewind()
        self._pause_until = max(self._pause_until, time.monotonic() + pause_s)

    async def _stream(self, ws: ClientConnection) -> None:
        """The sender: one per connection, cancelled when it closes."""
        while True:
            # Cleared before looking at the buffer, so a fix added after the look still
            # wakes the wait below (send_fix sets it; nothing runs in between).
            self._wakeup.clear()
            now = time.monotonic()
            frame = None
            was_idle = False
            if self._leave_hole:
                await ws.close()
                return
            if (
                self._resumed
                and now >= self._pause_until
                and self.buffer.frames_in_flight < self.max_frames_in_flight
            ):
                was_idle = self.buffer.in_flight == 0
                frame = self.buffer.next_frame()
            if frame is None:
                await self._idle(now)
                continue
            if frame.batch:
                text = wire.encode(wire.Batch(points=frame.points))
            else:
                text = wire.encode(frame.points[0])
            await ws.send(text)
            if was_idle:
                self._last_progress = time.monotonic()
            await asyncio.sleep(self._frame_interval_s)

    async def _idle(self, now: float) -> None:
        """Wait for something to send, the end of a pause, or an ack that is overdue."""
        timeout: float | None = None
        if now < self._pause_until:
            timeout = self._pause_until - now
        elif self.buffer.in_flight:
            overdue = self._last_progress + self.ack_timeout_s - now
            if overdue <= 0:
                log.warning(
                    "no ack for %d fixes in %.0f s; resending",
                    self.buffer.in_flight,
                    self.ack_timeout_s,
                )
                self.buffer.rewind()
                self._last_progress = now
                return
            timeout = overdue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)


def new_sos_id() -> str:
    """A fresh client id for one SOS press (a UUID, as the protocol asks)."""
    return str(uuid.uuid4())


def _check_fix(
    t: float,
    lat: float,
    lon: float,
    acc: float | None,
    speed: float | None,
    heading: float | None,
) -> None:
    for name, value in (("t", t), ("lat", lat), ("lon", lon)):
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, not {value!r}")
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"lat {lat} is outside -90..90")
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"lon {lon} is outside -180..180")
    for name, optional, high in (
        ("acc", acc, MAX_ACCURACY_M),
        ("speed", speed, MAX_SPEED_MS),
        ("heading", heading, 360.0),
    ):
        if optional is not None and not (math.isfinite(optional) and 0.0 <= optional <= high):
            raise ValueError(f"{name} {optional} is outside 0..{high:g}")
