"""One WebSocket connection: a receive loop, a sender task, limits, metrics.

The receive loop enforces the frame-size and rate limits and hands each text frame to the
endpoint's handler; the sender task drains the connection's ``Outbox``. Errors in a frame
become ``error`` frames and the connection stays up; only floods, slow consumers and the end
of a watched booking close it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from realtime import protocol as wire
from realtime.fanout import Close, Outbox
from realtime.metrics import Metrics
from realtime.protocol import CloseCode, ErrorCode, ProtocolError
from realtime.ratelimit import FloodGuard, Verdict
from realtime.settings import Settings

log = logging.getLogger("doorstep.connection")

FrameHandler = Callable[[str, float], Awaitable[None]]

# How long a polite close may take before we give up on a client that does not read.
CLOSE_TIMEOUT_S = 1.0


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

    def send(self, message: wire.msgspec.Struct, kind: str, **options: object) -> None:
        """Queue an outbound message (see ``Outbox.put`` for ``conflate_key`` and ``urgent``)."""
        self.outbox.put(kind, wire.encode(message), **options)  # type: ignore[arg-type]

    def send_error(self, error: ProtocolError) -> None:
        self.metrics.frames_rejected.labels(code=error.code.value).inc()
        self.send(wire.Error(code=error.code.value, message=error.message, seq=error.seq), "error")

    async def run(self, handle: FrameHandler) -> None:
        """Serve until the client leaves or the hub closes the connection."""
        self.metrics.connections.labels(role=self.role).inc()
        sender = asyncio.create_task(self._send_loop())
        receiver = asyncio.create_task(self._receive_loop(handle))
        abandoned = asyncio.create_task(self.outbox.abandoned.wait())
        try:
            await asyncio.wait({sender, receiver, abandoned}, return_when=asyncio.FIRST_COMPLETED)
            if receiver.done() and self.outbox.closing and not sender.done():
                # A flood: let the sender deliver the close frame (bounded wait).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(sender), CLOSE_TIMEOUT_S)
        finally:
            for task in (sender, receiver, abandoned):
                task.cancel()
            await asyncio.gather(sender, receiver, abandoned, return_exceptions=True)
            self.metrics.connections.labels(role=self.role).dec()
            if abandoned.done() and not abandoned.cancelled():
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
            self.metrics.frames_out.labels(type=kind).inc()

    async def _receive_loop(self, handle: FrameHandler) -> None:
        max_bytes = self.settings.max_frame_bytes
        while not self.outbox.closing:
            try:
                message = await self.websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            received = time.perf_counter()
            verdict = self.guard.check(time.monotonic())
            text = message.get("text")
            if verdict is not Verdict.ACCEPT and _may_be_sos(text):
                # An SOS is never dropped for the rate limit, not even in a flood: handle it
                # (it is validated like any frame) before refusing or closing anything.
                await self._handle(handle, text, received)  # type: ignore[arg-type]
                if verdict is Verdict.REFUSE:
                    continue
                # A flood still closes the connection; the sos_ack (urgent) goes out first.
            if verdict is Verdict.DISCONNECT:
                self.metrics.frames_rejected.labels(code=ErrorCode.RATE_LIMITED.value).inc()
                self.outbox.close(CloseCode.POLICY_FLOOD, "flood: too many frames over the limit")
                return
            if verdict is Verdict.REFUSE:
                self.send_error(
                    ProtocolError(
                        ErrorCode.RATE_LIMITED,
                        f"over {self.settings.rate_per_s:g} frames/s; frame dropped, slow down",
                    )
                )
                continue
            if text is None:
                self.send_error(
                    ProtocolError(
                        ErrorCode.BINARY_FRAME, "binary frames are not accepted; send JSON text"
                    )
                )
                continue
            # len() counts characters, a lower bound of the UTF-8 size: encode only when close.
            if len(text) > max_bytes or (
                len(text) * 4 > max_bytes and len(text.encode()) > max_bytes
            ):
                self.send_error(
                    ProtocolError(
                        ErrorCode.FRAME_TOO_LARGE,
                        f"frame is over {max_bytes} bytes; split batches into smaller ones",
                    )
                )
                continue
            await self._handle(handle, text, received)

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


def _may_be_sos(text: str | None) -> bool:
    """Cheap pre-check (the handler validates for real) for the frames exempt from limits."""
    return text is not None and len(text) < 8192 and '"sos' in text
