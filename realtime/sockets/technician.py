"""WS /v1/ws/technician: a technician's phone streams fixes, raises SOS, answers checks.

On connect the phone learns where to resume (the durable ``ack``), its active bookings and
any "are you OK?" check asked while it was offline; then every frame goes to the hub.
"""

from __future__ import annotations

from starlette.websockets import WebSocket

from alerts.watchdog import UnknownCheck
from realtime import protocol as wire
from realtime.auth import Role
from realtime.channels import technician_channel
from realtime.hub import Hub
from realtime.publish import public_booking
from realtime.safety import reporter_channel
from realtime.sockets.common import (
    authenticate,
    handle_sos,
    message_type,
    open_connection,
    track_token,
    watch,
)
from realtime.sockets.connection import Connection


async def technician_socket(websocket: WebSocket) -> None:
    principal = await authenticate(websocket, {Role.TECHNICIAN})
    if principal is None:
        return
    hub: Hub = websocket.app.state.hub
    metrics = websocket.app.state.metrics
    technician_id = principal.sub
    await websocket.accept()
    conn = open_connection(websocket, Role.TECHNICIAN)
    state = await hub.fleet.connected(technician_id)
    unsubscribers = [
        track_token(websocket, principal, conn),
        watch(hub.bus, technician_channel(technician_id), conn.outbox),
        watch(hub.bus, reporter_channel(Role.TECHNICIAN.value, technician_id), conn.outbox),
    ]
    try:
        # Tell the client where to resume: everything up to this seq is stored.
        conn.send(wire.Ack(seq=state.durable_seq), "ack", conflate_key="ack")
        for booking in hub.bookings.active_bookings_of(technician_id):
            conn.send(wire.BookingMessage(booking=public_booking(booking)), "booking")
        # An "are you OK?" asked while the phone was offline is asked again now, after the
        # booking it is about (not urgent: nothing is queued ahead of it yet).
        for check in await hub.watchdog.open_checks(technician_id):
            conn.send(check, "check")

        async def handle(text: str, received: float) -> None:
            try:
                message = wire.decode_technician_frame(text)
            except wire.ProtocolError:
                metrics.frame_in("invalid").inc()
                raise
            metrics.frame_in(message_type(message)).inc()
            if isinstance(message, wire.Sos | wire.SosCancel):
                await handle_sos(hub, principal, conn, message)
            elif isinstance(message, wire.CheckOk):
                await handle_check_ok(hub, technician_id, conn, message)
            else:
                await hub.pipeline.ingest(technician_id, message, received)

        await conn.run(handle)
    finally:
        for unsubscribe in unsubscribers:
            unsubscribe()
        hub.fleet.disconnected(technician_id)


async def handle_check_ok(
    hub: Hub, technician_id: str, conn: Connection, message: wire.CheckOk
) -> None:
    """The technician is OK; ``check_ack`` only once the answer is stored."""
    try:
        await hub.watchdog.answer(technician_id, message.id)
    except UnknownCheck as exc:
        raise wire.ProtocolError(wire.ErrorCode.NOT_FOUND, str(exc)) from None
    conn.send(wire.CheckAck(id=message.id), "check_ack", urgent=True)
