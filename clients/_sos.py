"""SOS delivery shared by the technician and the customer: acknowledged, or an exception.

An SOS is the one message that must never be lost quietly, so ``deliver`` only returns with
the hub's acknowledgement (``sos_ack`` on the socket, or 201/200 from ``POST /v1/sos``),
which the hub sends only once the incident is on disk. Each round:

1. if the socket is up, send the frame and wait ``ack_timeout_s`` for ``sos_ack``;
2. otherwise, or without an ack, ``POST`` the same SOS over HTTP;
3. if that fails too (network, 5xx), wait a little and go round again,

until ``deadline_s`` has passed, then raise ``SosNotDelivered``. Every round carries the
same client id, and the hub makes the same id the same incident, so a socket ack that was
only late and an HTTP retry that also went through still make one incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from clients._connection import ReconnectingSocket
from clients._http import json_or_raise
from clients.errors import HubUnavailable, SosNotDelivered
from realtime import protocol as wire

log = logging.getLogger("doorstep.clients")


@dataclass(frozen=True, slots=True)
class SosReceipt:
    """The hub stored the SOS ``id`` as ``incident``; ``via`` says which path answered."""

    id: str
    incident: str
    status: str
    via: str  # "socket" or "http"


class SosChannel:
    """Waiters for ``sos_ack`` by client id, and the socket-then-HTTP retry loop."""

    def __init__(
        self,
        socket: ReconnectingSocket,
        http: httpx.AsyncClient,
        *,
        ack_timeout_s: float = 2.0,
        deadline_s: float = 60.0,
        http_timeout_s: float = 5.0,
    ) -> None:
        self.socket = socket
        self.http = http
        # Short: sos_ack follows one durable write (milliseconds). Waiting longer on a socket
        # that may be dead only delays the HTTP fallback.
        self.ack_timeout_s = ack_timeout_s
        # Bounded: the person pressing SOS must learn that it did not go through while
        # something else (a phone call) can still be tried.
        self.deadline_s = deadline_s
        self.http_timeout_s = http_timeout_s
        self._waiters: dict[str, asyncio.Future[SosReceipt]] = {}
        self._refused = asyncio.Event()  # an sos_not_stored error: retry now, not at timeout

    def on_message(self, message: object) -> None:
        """Feed every socket message here; resolves waiters on ``sos_ack``."""
        if isinstance(message, wire.SosAck):
            waiter = self._waiters.get(message.id)
            if waiter is not None and not waiter.done():
                waiter.set_result(
                    SosReceipt(message.id, message.incident, message.status, via="socket")
                )
        elif isinstance(message, wire.Error) and message.code == wire.ErrorCode.SOS_NOT_STORED:
            self._refused.set()

    async def raise_sos(self, sos: wire.Sos) -> SosReceipt:
        # Validate here (id pattern, note length, coordinates): a malformed SOS must fail at
        # once, not after a minute of retries.
        _validate(sos, wire.Sos)
        if (sos.lat is None) != (sos.lon is None):
            raise ValueError("lat and lon must be given together")
        lat, lon = sos.lat, sos.lon
        if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"lat/lon {lat}, {lon} are not WGS84 degrees")
        body = msgspec.to_builtins(sos)
        return await self._deliver(sos.id, wire.encode(sos), "/v1/sos", body)

    async def cancel(self, sos_id: str, note: str | None = None) -> SosReceipt:
        """Take an SOS back (within the grace period, while unacknowledged)."""
        cancel = wire.SosCancel(id=sos_id, note=note)
        _validate(cancel, wire.SosCancel)
        body = {"note": note} if note is not None else {}
        return await self._deliver(sos_id, wire.encode(cancel), f"/v1/sos/{sos_id}/cancel", body)

    async def _deliver(self, sos_id: str, frame: str, path: str, body: object) -> SosReceipt:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        deadline = started + self.deadline_s
        # Registered before the first send: the ack can arrive before send() returns.
        waiter = self._waiters.setdefault(sos_id, loop.create_future())
        last_error: str | None = None
        pause = 0.2
        try:
            while True:
                if self.socket.is_connected:
                    if await self.socket.send(frame, timeout_s=self._left(deadline)):
                        if await self._wait_ack(
                            waiter, min(self.ack_timeout_s, self._left(deadline))
                        ):
                            return waiter.result()
                        last_error = "no sos_ack on the socket in time"
                    else:
                        last_error = "the socket failed while sending"
                else:
                    last_error = "the socket is down"
                if waiter.done():
                    return waiter.result()
                if self._left(deadline) <= 0:
                    break
                try:
                    return await self._post(
                        path, body, min(self.http_timeout_s, self._left(deadline))
                    )
                except HubUnavailable as exc:
                    last_error = str(exc)
                    log.warning("SOS %s over HTTP failed (%s); retrying", sos_id, exc)
                if self._left(deadline) <= 0:
                    break
                # A late socket ack also ends the pause.
                if await self._wait_ack(waiter, min(pause, self._left(deadline))):
                    return waiter.result()
                pause = min(pause * 2, 2.0)
        finally:
            if self._waiters.get(sos_id) is waiter:
                del self._waiters[sos_id]
        if waiter.done():
            return waiter.result()
        raise SosNotDelivered(sos_id, time.monotonic() - started, last_error)

    async def _post(self, path: str, body: object, timeout_s: float) -> SosReceipt:
        try:
            response = await self.http.post(path, json=body, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise HubUnavailable(f"{type(exc).__name__}: {exc}") from None
        data = json_or_raise(response)
        return SosReceipt(data["id"], data["incident"], data["status"], via="http")

    async def _wait_ack(self, waiter: asyncio.Future[SosReceipt], timeout_s: float) -> bool:
        """True once ``waiter`` has its ack; False at timeout or on an ``sos_not_stored``."""
        if waiter.done():
            return True
        if timeout_s <= 0:
            return False
        self._refused.clear()
        refused = asyncio.ensure_future(self._refused.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {waiter, refused}
            await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refused
        return waiter.done()

    @staticmethod
    def _left(deadline: float) -> float:
        return max(0.0, deadline - time.monotonic())


def _validate(message: msgspec.Struct, kind: type[msgspec.Struct]) -> None:
    """Check ``message`` against the protocol's constraints; ValueError if it breaks one."""
    try:
        msgspec.json.decode(wire.encode(message), type=kind)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
