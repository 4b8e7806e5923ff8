"""One WebSocket connection: a receive loop, a sender task, limits, metrics.

The receive loop enforces the frame-size and rate limits and hands each text frame to the
endpoint's handler; the sender task drains the connection's ``Outbox``. Errors in a frame
become ``error`` frames and the connection stays up; only floods, slow consumers and the end
of a watched booking close it.

Two rate-limit modes. Technician sockets carry fixes the hub acknowledges, so a frame over
the rate is never dropped: it waits in a bounded backlog and is processed when the token
bucket allows (back-pressure, ``Pacer``); only a backlog longer than ``rate_max_delay_s`` (or
bigger than ``rate_backlog_max_bytes``) is a flood. Customer and operator sockets have no
acks: a frame over the rate is refused ``rate_limited`` (``FloodGuard``). On both, an SOS (its
decoded type, not a substring) is handled at once, ahead of any backlog, and never refused
for the rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from realtime import protocol as wire
from realtime.metrics import Metrics
from realtime.protocol import CloseCode, ErrorCode, ProtocolError
from realtime.settings import Settings
from realtime.sockets.fanout import Close, Outbox
from realtime.sockets.ratelimit import FloodGuard, Pacer, Verdict

log = logging.getLogger("doorstep.connection")

FrameHandler = Callable[[str, float], Awaitable[None]]

# How long a polite close may take before we give up on a client that does not read.
CLOSE_TIMEOUT_S = 1.0

# Roles whose frames are paced instead of refused: their fixes are acknowledged.
PACED_ROLES = frozenset({"technician"})
# Roles that may raise an SOS, and the decoder that says whether a frame is one.
SOS_DECODERS = {"technician": wire.TECHNICIAN_FRAMES, "customer": wire.CUSTOMER_FRAMES}
SOS_TYPES = frozenset({"sos", "sos_cancel"})


class _Kind(msgspec.Struct):
    """Only a frame's ``type`` (the other fields are skipped, not decoded)."""

    type: str | None = None


_kind_decoder = msgspec.json.Decoder(_Kind)


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A frame in the backlog: processed at ``due`` (monotonic), or its error sent then."""

    due: float
    received: float
    text: str | None
    error: ProtocolError | None
    size: int


class Connection:
    def __init__(self, websocket: WebSocket, role: str, settings: Settings, metrics: Metrics):
        self.websocket = websocket
        self.role = role
        self.settings = settings
        self.metrics = metrics
        self.outbox = Outbox(
            settings.send_queue_limit,
            on_drop=lambda reason: metrics.queue_drops.labels(reason=reason).inc(),
        )
        self.guard = FloodGuard(
            settings.rate_per_s,
            settings.rate_burst,
            settings.flood_max_refused,
            settings.flood_window_s,
        )
        self.paced = role in PACED_ROLES
        self.pacer = Pacer(settings.rate_per_s, settings.rate_burst, settings.rate_max_delay_s)
        self._sos_decoder = SOS_DECODERS.get(role)
        self._backlog: deque[_Waiting] = deque()
        self._backlog_bytes = 0
        self._backlog_ready = asyncio.Event()
        self._backlog_busy = False  # the worker is handling a frame it took off the backlog
        # The backlog's worker, started by the first frame that has to wait (most sockets
        # never have one: a task per socket is garbage-collector work at thousands of them).
        self._frame_handler: FrameHandler | None = None
        self._worker: asyncio.Task[None] | None = None

    def send(self, message: wire.msgspec.Struct, kind: str, **options: object) -> None:
        """Queue an outbound message (see ``Outbox.put`` for ``conflate_key`` and ``urgent``)."""
        self.outbox.put(kind, wire.encode(message), **options)  # type: ignore[arg-type]

    def send_error(self, error: ProtocolError) -> None:
        self.metrics.frames_rejected.labels(code=error.code.value).inc()
        self.send(wire.Error(code=error.code.value, message=error.message, seq=error.seq), "error")

    async def run(self, handle: FrameHandler) -> None:
        """Serve until the client leaves or the hub closes the connection."""
        self.metrics.connections.labels(role=self.role).inc()
        self._frame_handler = handle
        sender = asyncio.create_task(self._send_loop())
        receiver = asyncio.create_task(self._receive_loop(handle))
        abandoned = self.outbox.abandoned
        try:
            await asyncio.wait({sender, receiver, abandoned}, return_when=asyncio.FIRST_COMPLETED)
            if receiver.done() and self.outbox.closing and not sender.done():
                # A flood: let the sender deliver the close frame (bounded wait).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(sender), CLOSE_TIMEOUT_S)
        finally:
            # Frames still in the backlog are not processed: nothing after them is acked.
            tasks = [t for t in (sender, receiver, self._worker) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.metrics.connections.labels(role=self.role).dec()
            if abandoned.done():
                self.metrics.closes.labels(code=str(CloseCode.SLOW_CONSUMER.value)).inc()

    async def _send_loop(self) -> None:
        while True:
            item = await self.outbox.get()
            if isinstance(item, Close):
                self.metrics.closes.labels(code=str(item.code)).inc()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.websocket.close(item.code, wire.close_reason(item.reason)),
                        CLOSE_TIMEOUT_S,
                    )
                return
            kind, text = item
            await self.websocket.send_text(text)
            self.metrics.frame_out(kind).inc()

    async def _receive_loop(self, handle: FrameHandler) -> None:
        while not self.outbox.closing:
            try:
                message = await self.websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            received = time.perf_counter()
            now = time.monotonic()
            text = message.get("text")
            problem = self._frame_problem(text)
            sos = problem is None and self._is_sos(text)  # type: ignore[arg-type]
            if self.paced:
                due = self.pacer.admit(now)
                size = len(text) if text is not None else len(message.get("bytes") or b"")
                flood = due is None or (
                    not sos
                    and bool(self._backlog)
                    and self._backlog_bytes + size > self.settings.rate_backlog_max_bytes
                )
                if sos:
                    # Ahead of the backlog and never refused; a flood still closes after it.
                    await self._handle(handle, text, received)  # type: ignore[arg-type]
                if flood:
                    self._close_flood("backlog over the rate limit")
                    return
                if sos:
                    continue
                if due <= now and not self._backlog and not self._backlog_busy:
                    # Within the rate and nothing ahead of it: handle it here, as an
                    # unpaced socket does (no hand-off to the worker on the hot path).
                    if problem is not None:
                        self.send_error(problem)
                    else:
                        await self._handle(handle, text, received)  # type: ignore[arg-type]
                    continue
                self._enqueue(_Waiting(due, received, text, problem, size))  # type: ignore[arg-type]
                continue
            verdict = self.guard.check(now)
            if verdict is not Verdict.ACCEPT and sos:
                # An SOS is never dropped for the rate limit, not even in a flood: handle it
                # (it is validated like any frame) before refusing or closing anything.
                await self._handle(handle, text, received)  # type: ignore[arg-type]
                if verdict is Verdict.REFUSE:
                    continue
                # A flood still closes the connection; the sos_ack (urgent) goes out first.
            if verdict is Verdict.DISCONNECT:
                self._close_flood("too many frames over the limit")
                return
            if verdict is Verdict.REFUSE:
                self.send_error(
                    ProtocolError(
                        ErrorCode.RATE_LIMITED,
                        f"over {self.settings.rate_per_s:g} frames/s; frame dropped, slow down",
                    )
                )
                continue
            if problem is not None:
                self.send_error(problem)
                continue
            await self._handle(handle, text, received)  # type: ignore[arg-type]

    def _close_flood(self, why: str) -> None:
        self.metrics.frames_rejected.labels(code=ErrorCode.RATE_LIMITED.value).inc()
        self.outbox.close(CloseCode.POLICY_FLOOD, f"flood: {why}")

    def _enqueue(self, waiting: _Waiting) -> None:
        self._backlog.append(waiting)
        self._backlog_bytes += waiting.size
        self._backlog_ready.set()
        if self._worker is None and self._frame_handler is not None:
            # It never ends by itself; ``run`` cancels it with the connection.
            self._worker = asyncio.create_task(self._backlog_loop(self._frame_handler))

    async def _backlog_loop(self, handle: FrameHandler) -> None:
        """Process the paced frames in arrival order, each when the token bucket allows."""
        while True:
            if not self._backlog:
                self._backlog_ready.clear()
                await self._backlog_ready.wait()
                continue
            waiting = self._backlog[0]
            delay = waiting.due - time.monotonic()
            if delay > 0:
                # The back-pressure itself; the receive loop keeps reading meanwhile (an
                # SOS behind these frames is handled at once).
                await asyncio.sleep(delay)
            if self.outbox.closing:
                return  # a flood or the end of the booking: nothing more is processed
            self._backlog.popleft()
            self._backlog_bytes -= waiting.size
            if waiting.error is not None:
                self.send_error(waiting.error)
                continue
            # Frames are handled one at a time: the next waits for this one's awaits, and
            # the receive loop does not take the fast path while this one is in hand.
            self._backlog_busy = True
            try:
                await self._handle(handle, waiting.text, waiting.received)  # type: ignore[arg-type]
            finally:
                self._backlog_busy = False

    def _frame_problem(self, text: str | None) -> ProtocolError | None:
        """Why a frame cannot be handled at all (binary, too large), or None."""
        if text is None:
            return ProtocolError(
                ErrorCode.BINARY_FRAME, "binary frames are not accepted; send JSON text"
            )
        max_bytes = self.settings.max_frame_bytes
        # len() counts characters, a lower bound of the UTF-8 size: encode only when close.
        if len(text) > max_bytes or (len(text) * 4 > max_bytes and len(text.encode()) > max_bytes):
            return ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"frame is over {max_bytes} bytes; split batches into smaller ones",
            )
        return None

    def _is_sos(self, text: str) -> bool:
        """Whether the frame decodes as an ``sos``/``sos_cancel`` of this socket (exempt from
        the rate limit). By decoded type only: a location carrying "sos" in a field or a
        note, or a malformed frame typed "sos", is limited like any other frame."""
        if self._sos_decoder is None:
            return False
        try:
            kind = _kind_decoder.decode(text).type
        except (msgspec.DecodeError, RecursionError):  # not JSON, a non-string type, too deep
            return False
        if kind not in SOS_TYPES:
            return False
        try:
            return isinstance(self._sos_decoder.decode(text), wire.Sos | wire.SosCancel)
        except ProtocolError:
            return False

    async def _handle(self, handle: FrameHandler, text: str, received: float) -> None:
        try:
            await handle(text, received)
        except ProtocolError as error:
            self.send_error(error)
        except Exception:
            # A bug must not silently kill a technician's stream: log it, tell the
            # client its frame was not processed (it keeps it buffered), carry on.
            log.exception("unexpected error handling a %s frame", self.role)
            self.send_error(
                ProtocolError(ErrorCode.INTERNAL_ERROR, "the hub failed on this frame; retry")
            )
