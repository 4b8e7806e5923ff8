"""The customer's client: watch one booking until it is over, and raise an SOS.

Example::

    async with CustomerClient("https://hub.example", token, "b-1") as watch:
        async for event in watch:  # ends when the booking is completed or cancelled
            if isinstance(event, Position):
                print("technician at", event.lat, event.lon)
            elif isinstance(event, EtaMessage):
                print(f"arriving in {event.seconds / 60:.0f} min")
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from clients._client import BaseClient, TokenProvider
from clients._connection import Backoff
from clients._events import DEFAULT_EVENT_LIMIT
from clients._sos import SosChannel, SosReceipt
from clients.technician import new_sos_id
from realtime import protocol as wire

CustomerEvent = wire.Snapshot | wire.Position | wire.EtaMessage | wire.Status | wire.SosStatus

FINAL_STATUSES = frozenset({"completed", "cancelled"})


class CustomerClient(BaseClient[CustomerEvent]):
    """Events of one booking: ``Snapshot`` (first, and again after every reconnect),
    ``Position``, ``EtaMessage``, ``Status`` and ``SosStatus`` (one's own SOS).

    The latest of each is also kept (``booking``, ``position``, ``eta``, ``status``), so an
    app can draw the current picture without replaying events. Iteration ends when the hub
    closes the socket with 1000 because the booking is over; it raises ``AuthError`` or
    ``NotFoundError`` when the token or booking is refused. Drops in between are bridged by
    reconnecting, and the snapshot that opens each connection resynchronises the state.
    """

    _stop_on_normal_close = True

    def __init__(
        self,
        base_url: str,
        token: str,
        booking_id: str,
        *,
        sos_ack_timeout_s: float = 2.0,
        sos_deadline_s: float = 60.0,
        ws_base_url: str | None = None,
        backoff: Backoff | None = None,
        http_timeout_s: float = 10.0,
        event_limit: int = DEFAULT_EVENT_LIMIT,
        token_provider: TokenProvider | None = None,
    ) -> None:
        self.booking_id = booking_id
        self._path = f"/v1/ws/bookings/{quote(booking_id, safe='')}"
        super().__init__(
            base_url,
            token,
            ws_base_url=ws_base_url,
            backoff=backoff,
            http_timeout_s=http_timeout_s,
            event_limit=event_limit,
            token_provider=token_provider,
        )
        # Once the booking is over there is nothing left to watch: a drop between the final
        # status and the hub's 1000 must not start a reconnect.
        self.socket.finished = lambda: self.over
        self.booking: dict[str, Any] | None = None
        self.position: wire.Position | None = None
        self.eta: wire.EtaMessage | None = None
        self.status: str | None = None
        self._sos = SosChannel(
            self.socket, self.http, ack_timeout_s=sos_ack_timeout_s, deadline_s=sos_deadline_s
        )

    @property
    def over(self) -> bool:
        """The booking is completed or cancelled."""
        return self.status in FINAL_STATUSES

    async def sos(
        self,
        note: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        *,
        acc: float | None = None,
        sos_id: str | None = None,
    ) -> SosReceipt:
        """Raise an SOS tied to this booking; returns only once the hub has stored it.

        Works after the booking socket has closed too: it falls back to ``POST /v1/sos``.
        """
        sos = wire.Sos(
            id=sos_id or new_sos_id(), t=time.time(), lat=lat, lon=lon, acc=acc, note=note
        )
        return await self._sos.raise_sos(sos)

    async def cancel_sos(self, sos_id: str, note: str | None = None) -> SosReceipt:
        """Take back a pocket press (within the grace period, while unacknowledged)."""
        return await self._sos.cancel(sos_id, note)

    async def _received(self, message: Any) -> None:
        self._sos.on_message(message)
        if isinstance(message, wire.Snapshot):
            self.booking = message.booking
            self.position = message.position
            self.eta = message.eta
            if message.booking is not None:
                self.status = message.booking.get("status")
        elif isinstance(message, wire.Position):
            self.position = message
        elif isinstance(message, wire.EtaMessage):
            self.eta = message
        elif isinstance(message, wire.Status):
            self.status = message.status
            if self.booking is not None:
                self.booking = {**self.booking, "status": message.status}
        elif not isinstance(message, wire.SosStatus):
            return
        self._emit(message)
