"""The soak's clients: the real SDK (what phones and consoles run), each through the balancer,
each recording what the checks need, each able to drop its connection on cue.

A drop aborts the TCP connection from the client's side (no close frame), as when a phone
loses its radio; the SDK notices, backs off and reconnects through the balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection

from clients import Backoff, CustomerClient, OperatorClient, TechnicianClient
from clients._client import BaseClient
from clients.errors import DoorstepError
from loadtest.chaos.records import Ack, ConsoleRecord, SosRecord, TechRecord
from realtime import protocol as wire


def quick_backoff() -> Backoff:
    """Reconnect within ~2 s: the soak packs many drops into minutes, and a 30 s cap would
    leave clients offline for much of it (the schedule is compressed, the SDK is not)."""
    return Backoff(base_s=0.2, cap_s=2.0, flood_delay_s=2.0)


def drop(client: BaseClient[Any]) -> bool:
    """Abort the client's connection (True if it had one)."""
    ws = client.socket.ws
    if ws is None:
        return False
    ws.transport.abort()
    return True


class ChaosTechnician(TechnicianClient):
    """The SDK's technician, noting every ack with the connection it came on, and which hub
    process each connection reached (``route_of``: the balancer's answer for a client port)."""

    def __init__(
        self, record: TechRecord, base_url: str, token: str, route_of: Callable[[int], str]
    ) -> None:
        super().__init__(base_url, token, backoff=quick_backoff(), event_limit=16)
        self.record = record
        self.route_of = route_of

    async def _opened(self, ws: ClientConnection) -> Any:
        # The handshake went through the balancer, so it has routed this port already.
        port = ws.transport.get_extra_info("sockname")[1]
        self.record.hubs[self.socket.connections] = self.route_of(port)
        return await super()._opened(ws)

    def _on_ack(self, seq: int) -> None:
        # Before the SDK applies it: whether this is the connection's first (resume) ack.
        self.record.acks.append(Ack(self.socket.connections, seq, resume=not self._resumed))
        super()._on_ack(seq)

    def finish_record(self) -> None:
        stats = self.stats
        record = self.record
        record.acked_seq = stats.acked_seq
        record.unacked = stats.buffered
        record.dropped = stats.dropped
        record.rejected = stats.rejected
        record.connections = self.socket.connections


class Console:
    """An operator console (the SDK's OperatorClient) and what it was told."""

    def __init__(self, name: str, base_url: str, token: str) -> None:
        self.client = OperatorClient(base_url, token, backoff=quick_backoff(), event_limit=16)
        self.record = ConsoleRecord(name)
        self.client.add_listener(self._event)

    def _event(self, event: Any) -> None:
        if isinstance(event, wire.Snapshot):
            self.record.connections += 1
            self.record.in_snapshot.update(str(i["id"]) for i in event.incidents or ())
        elif isinstance(event, wire.IncidentMessage) and event.reason == "raised":
            self.record.raised[str(event.incident["id"])] += 1


class Watcher:
    """A customer watching one booking; counts what arrives (a sign of life, not checked)."""

    def __init__(self, base_url: str, token: str, booking_id: str) -> None:
        self.client = CustomerClient(
            base_url, token, booking_id, backoff=quick_backoff(), event_limit=16
        )
        self.positions = 0
        self.client.add_listener(self._event)

    def _event(self, event: Any) -> None:
        if isinstance(event, wire.Position):
            self.positions += 1


async def press_sos(tech: ChaosTechnician, record: SosRecord, lat: float, lon: float) -> None:
    """One SOS press through the SDK (socket, then HTTP, retried until acked or 60 s)."""
    pressed = time.monotonic()
    try:
        receipt = await tech.sos(sos_id=record.client_id, lat=lat, lon=lon, note="chaos soak")
    except DoorstepError as exc:
        record.error = f"{type(exc).__name__}: {exc}"
        return
    record.incident = receipt.incident
    record.via = receipt.via
    record.ack_after_s = time.monotonic() - pressed


async def close_all(clients: list[BaseClient[Any]]) -> None:
    with contextlib.suppress(Exception):
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
