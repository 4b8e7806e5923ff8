"""WS /v1/ws/bookings/{id}: a customer (or an operator) watches one booking.

A snapshot, then the live stream with nothing lost between them; the customer may raise an
SOS here. The socket closes normally once the booking is final.
"""

from __future__ import annotations

from starlette.websockets import WebSocket

from realtime import protocol as wire
from realtime.auth import Role
from realtime.booking import Booking
from realtime.channels import booking_channel
from realtime.hub import Hub
from realtime.protocol import CloseCode
from realtime.publish import public_booking
from realtime.safety import reporter_channel
from realtime.sockets.common import (
    authenticate,
    handle_sos,
    message_type,
    open_connection,
    refuse,
    track_token,
    watch,
)


def snapshot_of(hub: Hub, booking: Booking) -> wire.Snapshot:
    """The booking, and while it is the technician's current visit, where they are."""
    position = eta = None
    if hub.bookings.shows_technician(booking):
        assert booking.technician_id is not None
        position = hub.fleet.last_position(booking.technician_id)
        eta = hub.arrivals.eta_of(booking.id)
    return wire.Snapshot(booking=public_booking(booking), position=position, eta=eta)


async def booking_socket(websocket: WebSocket) -> None:
    principal = await authenticate(websocket, {Role.CUSTOMER, Role.OPERATOR})
    if principal is None:
        return
    booking_id = websocket.path_params["booking_id"]
    if principal.role is Role.CUSTOMER and principal.booking != booking_id:
        await refuse(websocket, CloseCode.FORBIDDEN, "this token is for another booking")
        return
    hub: Hub = websocket.app.state.hub
    booking = await hub.bookings.get_booking(booking_id)
    if booking is None:
        await refuse(
            websocket, CloseCode.NOT_FOUND, f"booking {wire.clip(booking_id, 64)} does not exist"
        )
        return
    await websocket.accept()
    conn = open_connection(websocket, principal.role)
    # Re-read after the awaits above, then snapshot and subscribe with no await in between:
    # no status or position can slip between the snapshot and the live stream.
    booking = await hub.bookings.get_booking(booking_id) or booking
    if booking.active and booking.technician_id:
        await hub.fleet.look_around([booking.technician_id])  # their position, if on another hub
        booking = await hub.bookings.get_booking(booking_id) or booking
    conn.send(snapshot_of(hub, booking), "snapshot")
    unsubscribers = [
        track_token(websocket, principal, conn),
        watch(hub.bus, booking_channel(booking_id), conn.outbox),
    ]
    if principal.role is Role.CUSTOMER:
        unsubscribers.append(
            watch(hub.bus, reporter_channel(principal.role.value, principal.sub), conn.outbox)
        )
    if booking.final:
        conn.outbox.close(
            CloseCode.NORMAL, f"booking is {booking.status.value}", discard_pending=False
        )
    metrics = websocket.app.state.metrics

    async def handle(text: str, received: float) -> None:
        try:
            message = wire.CUSTOMER_FRAMES.decode(text)
        except wire.ProtocolError:
            metrics.frame_in("invalid").inc()
            raise
        metrics.frame_in(message_type(message)).inc()
        if principal.role is not Role.CUSTOMER:
            raise wire.ProtocolError(
                wire.ErrorCode.FORBIDDEN, "only the booking's customer raises SOS here"
            )
        await handle_sos(hub, principal, conn, message)

    try:
        await conn.run(handle)
    finally:
        for unsubscribe in unsubscribers:
            unsubscribe()
