"""The three WebSocket endpoints: technician ingest, booking watch, operator console."""

from __future__ import annotations

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from realtime import auth
from realtime import protocol as wire
from realtime.auth import AuthError, Principal, Role
from realtime.connection import Connection
from realtime.hub import FLEET_CHANNEL, Hub, booking_channel, public_booking, technician_channel
from realtime.protocol import CloseCode
from realtime.zoning import OPS_CHANNEL


async def _refuse(websocket: WebSocket, code: CloseCode, reason: str) -> None:
    # Accept first: a close frame with a code and reason is something clients can show;
    # an HTTP 403 during the handshake is not visible to browsers' WebSocket API.
    await websocket.accept()
    await websocket.close(code, wire.close_reason(reason))
    websocket.app.state.metrics.closes.labels(code=str(code.value)).inc()


async def _authenticate(websocket: WebSocket, roles: set[Role]) -> Principal | None:
    settings = websocket.app.state.settings
    token = auth.bearer_token(
        websocket.headers.get("authorization"), websocket.query_params.get("token")
    )
    if token is None:
        await _refuse(websocket, CloseCode.UNAUTHORIZED, "missing token")
        return None
    try:
        principal = auth.verify(settings.secret.get_secret_value(), token)
    except AuthError as exc:
        await _refuse(websocket, CloseCode.UNAUTHORIZED, exc.reason)
        return None
    if principal.role not in roles:
        allowed = ", ".join(sorted(r.value for r in roles))
        await _refuse(
            websocket,
            CloseCode.FORBIDDEN,
            f"role {principal.role.value} cannot open this socket ({allowed} can)",
        )
        return None
    return principal


def _connection(websocket: WebSocket, role: Role) -> Connection:
    state = websocket.app.state
    return Connection(websocket, role.value, state.settings, state.metrics)


async def technician_socket(websocket: WebSocket) -> None:
    principal = await _authenticate(websocket, {Role.TECHNICIAN})
    if principal is None:
        return
    hub: Hub = websocket.app.state.hub
    metrics = websocket.app.state.metrics
    technician_id = principal.sub
    await websocket.accept()
    conn = _connection(websocket, Role.TECHNICIAN)
    state = await hub.technician_connected(technician_id)
    unsubscribe = hub.watch(technician_channel(technician_id), conn.outbox)
    try:
        # Tell the client where to resume: everything up to this seq is stored.
        conn.send(wire.Ack(seq=state.durable_seq), "ack", conflate_key="ack")
        for booking in hub.active_bookings_of(technician_id):
            conn.send(wire.BookingMessage(booking=public_booking(booking)), "booking")

        async def handle(text: str, received: float) -> None:
            try:
                message = wire.decode_technician_frame(text)
            except wire.ProtocolError:
                metrics.frames_in.labels(type="invalid").inc()
                raise
            metrics.frames_in.labels(type=type(message).__name__.lower()).inc()
            await hub.ingest(technician_id, message, received)

        await conn.run(handle)
    finally:
        unsubscribe()
        hub.technician_disconnected(technician_id)


async def booking_socket(websocket: WebSocket) -> None:
    principal = await _authenticate(websocket, {Role.CUSTOMER, Role.OPERATOR})
    if principal is None:
        return
    booking_id = websocket.path_params["booking_id"]
    if principal.role is Role.CUSTOMER and principal.booking != booking_id:
        await _refuse(websocket, CloseCode.FORBIDDEN, "this token is for another booking")
        return
    hub: Hub = websocket.app.state.hub
    booking = await hub.get_booking(booking_id)
    if booking is None:
        await _refuse(
            websocket, CloseCode.NOT_FOUND, f"booking {wire.clip(booking_id, 64)} does not exist"
        )
        return
    await websocket.accept()
    conn = _connection(websocket, principal.role)
    # Re-read after the awaits above, then snapshot and subscribe with no await in between:
    # no status or position can slip between the snapshot and the live stream.
    booking = await hub.get_booking(booking_id) or booking
    conn.send(hub.booking_snapshot(booking), "snapshot")
    unsubscribe = hub.watch(booking_channel(booking_id), conn.outbox)
    if booking.final:
        conn.outbox.close(
            CloseCode.NORMAL, f"booking is {booking.status.value}", discard_pending=False
        )
    metrics = websocket.app.state.metrics

    async def handle(text: str, received: float) -> None:
        metrics.frames_in.labels(type="invalid").inc()
        raise wire.refuse_frame(text, wire.CUSTOMER_INBOUND_TYPES)

    try:
        await conn.run(handle)
    finally:
        unsubscribe()


async def operator_socket(websocket: WebSocket) -> None:
    principal = await _authenticate(websocket, {Role.OPERATOR})
    if principal is None:
        return
    hub: Hub = websocket.app.state.hub
    metrics = websocket.app.state.metrics
    await websocket.accept()
    conn = _connection(websocket, Role.OPERATOR)
    conn.send(wire.Snapshot(fleet=hub.fleet_snapshot()), "snapshot")
    unsubscribers = [hub.watch(FLEET_CHANNEL, conn.outbox), hub.watch(OPS_CHANNEL, conn.outbox)]

    async def handle(text: str, received: float) -> None:
        metrics.frames_in.labels(type="invalid").inc()
        raise wire.refuse_frame(text, wire.OPERATOR_INBOUND_TYPES)

    try:
        await conn.run(handle)
    finally:
        for unsubscribe in unsubscribers:
            unsubscribe()


routes = [
    WebSocketRoute("/v1/ws/technician", technician_socket),
    WebSocketRoute("/v1/ws/bookings/{booking_id}", booking_socket),
    WebSocketRoute("/v1/ws/ops", operator_socket),
]
