"""What the hub tells watchers, encoded once and put on the bus channel it belongs to.

Every outgoing message of the fix pipeline and the booking desk goes through here, so each
is encoded once (not per watcher: the sockets' fan-out hands the same text to every outbox)
and carries the conflation key that lets a slow watcher skip stale ones.
"""

from __future__ import annotations

import msgspec

from realtime import protocol as wire
from realtime.backends.base import Bus, BusMessage
from realtime.booking import Booking
from realtime.channels import booking_channel, technician_channel
from realtime.positions import position


def public_booking(booking: Booking) -> dict[str, object]:
    return msgspec.to_builtins(booking)


class Publisher:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def position(self, booking_id: str, technician_id: str, fix: wire.Location) -> None:
        """The technician's newest position, to the watchers of their current visit."""
        text = wire.encode(position(technician_id, fix))
        await self.bus.publish(
            booking_channel(booking_id),
            BusMessage(kind="position", text=text, conflate_key=f"position:{technician_id}"),
        )

    async def ack(self, technician_id: str, seq: int) -> None:
        text = wire.encode(wire.Ack(seq=seq))
        await self.bus.publish(
            technician_channel(technician_id), BusMessage(kind="ack", text=text, conflate_key="ack")
        )

    async def eta(self, message: wire.EtaMessage) -> None:
        await self.bus.publish(
            booking_channel(message.booking_id),
            BusMessage(kind="eta", text=wire.encode(message), conflate_key="eta"),
        )

    async def status(self, booking: Booking, t: float, cause: str | None) -> None:
        """A lifecycle step, to the booking's watchers; the last one closes their sockets."""
        status = wire.Status(booking_id=booking.id, status=booking.status.value, t=t, cause=cause)
        await self.bus.publish(
            booking_channel(booking.id),
            BusMessage(kind="status", text=wire.encode(status), final=booking.final),
        )

    async def booking(self, booking: Booking, to: str | None = None) -> None:
        """The booking as it is now, to its technician (or ``to``, one it was taken from)."""
        technician = to or booking.technician_id
        if technician:
            text = wire.encode(wire.BookingMessage(booking=public_booking(booking)))
            await self.bus.publish(
                technician_channel(technician), BusMessage(kind="booking", text=text)
            )
