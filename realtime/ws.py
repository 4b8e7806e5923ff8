"""The three WebSocket endpoints: technician ingest, booking watch, operator console."""

from __future__ import annotations

import logging

import msgspec
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from alerts.incident import IllegalIncidentTransition, IncidentAction, Outcome
from alerts.safety_alert import IllegalAlertTransition
from alerts.watchdog import UnknownCheck
from realtime import auth
from realtime import protocol as wire
from realtime.alerting import AlertNotFound
from realtime.auth import AuthError, Principal, Role
from realtime.backends.base import Unsubscribe
from realtime.channels import FLEET_CHANNEL, OPS_CHANNEL, booking_channel, technician_channel
from realtime.connection import Connection
from realtime.hub import Hub
from realtime.protocol import CloseCode
from realtime.publish import public_booking
from realtime.safety import IncidentNotFound, reporter_channel

log = logging.getLogger("doorstep.ws")


async def _refuse(websocket: WebSocket, code: CloseCode, reason: str) -> None:
    # Accept first: a close frame with a code and reason is something clients can show;
    # an HTTP 403 during the handshake is not visible to browsers' WebSocket API.
    await websocket.accept()
    await websocket.close(code, wire.close_reason(reason))
    websocket.app.state.metrics.closes.labels(code=str(code.value)).inc()


async def _authenticate(websocket: WebSocket, roles: set[Role]) -> Principal | None:
    token = auth.bearer_token(
        websocket.headers.get("authorization"), websocket.query_params.get("token")
    )
    if token is None:
        await _refuse(websocket, CloseCode.UNAUTHORIZED, "missing token")
        return None
    try:
        principal = auth.verify(websocket.app.state.keyring, token)
        websocket.app.state.tokens.check(principal)  # revoked (in memory, no await)
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


def _track_token(websocket: WebSocket, principal: Principal, conn: Connection) -> Unsubscribe:
    """Close this socket 4401 when its token expires or is revoked (realtime/revocation.py);
    call the result when the socket ends."""
    return websocket.app.state.tokens.track(principal, conn.outbox)


async def technician_socket(websocket: WebSocket) -> None:
    principal = await _authenticate(websocket, {Role.TECHNICIAN})
    if principal is None:
        return
    hub: Hub = websocket.app.state.hub
    metrics = websocket.app.state.metrics
    technician_id = principal.sub
    await websocket.accept()
    conn = _connection(websocket, Role.TECHNICIAN)
    state = await hub.fleet.connected(technician_id)
    unsubscribers = [
        _track_token(websocket, principal, conn),
        hub.watch(technician_channel(technician_id), conn.outbox),
        hub.watch(reporter_channel(Role.TECHNICIAN.value, technician_id), conn.outbox),
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
                metrics.frames_in.labels(type="invalid").inc()
                raise
            metrics.frames_in.labels(type=message_type(message)).inc()
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


def message_type(message: object) -> str:
    return str(type(message).__struct_config__.tag)


async def handle_sos(
    hub: Hub, principal: Principal, conn: Connection, message: wire.Sos | wire.SosCancel
) -> None:
    """Raise or cancel an SOS; ``sos_ack`` only once the incident is stored."""
    try:
        if isinstance(message, wire.Sos):
            incident, _ = await hub.safety.raise_sos(principal, message)
        else:
            incident = await hub.safety.cancel_by_client_id(principal, message.id)
    except wire.ProtocolError:
        raise
    except IncidentNotFound as exc:
        raise wire.ProtocolError(wire.ErrorCode.NOT_FOUND, str(exc)) from None
    except IllegalIncidentTransition as exc:
        raise wire.ProtocolError(wire.ErrorCode.ILLEGAL_TRANSITION, str(exc)) from None
    except Exception:
        # Never a false ack: the client keeps the SOS and retries (or falls back to HTTP).
        log.exception("SOS %s could not be stored", message.id)
        raise wire.ProtocolError(
            wire.ErrorCode.SOS_NOT_STORED, f"SOS {message.id} was not stored; retry now"
        ) from None
    reply = wire.SosAck(id=message.id, incident=incident.id, status=incident.status.value)
    conn.send(reply, "sos_ack", urgent=True)


async def handle_check_ok(
    hub: Hub, technician_id: str, conn: Connection, message: wire.CheckOk
) -> None:
    """The technician is OK; ``check_ack`` only once the answer is stored."""
    try:
        await hub.watchdog.answer(technician_id, message.id)
    except UnknownCheck as exc:
        raise wire.ProtocolError(wire.ErrorCode.NOT_FOUND, str(exc)) from None
    conn.send(wire.CheckAck(id=message.id), "check_ack", urgent=True)


async def booking_socket(websocket: WebSocket) -> None:
    principal = await _authenticate(websocket, {Role.CUSTOMER, Role.OPERATOR})
    if principal is None:
        return
    booking_id = websocket.path_params["booking_id"]
    if principal.role is Role.CUSTOMER and principal.booking != booking_id:
        await _refuse(websocket, CloseCode.FORBIDDEN, "this token is for another booking")
        return
    hub: Hub = websocket.app.state.hub
    booking = await hub.bookings.get_booking(booking_id)
    if booking is None:
        await _refuse(
            websocket, CloseCode.NOT_FOUND, f"booking {wire.clip(booking_id, 64)} does not exist"
        )
        return
    await websocket.accept()
    conn = _connection(websocket, principal.role)
    # Re-read after the awaits above, then snapshot and subscribe with no await in between:
    # no status or position can slip between the snapshot and the live stream.
    booking = await hub.bookings.get_booking(booking_id) or booking
    if booking.active and booking.technician_id:
        await hub.fleet.look_around([booking.technician_id])  # their position, if on another hub
        booking = await hub.bookings.get_booking(booking_id) or booking
    conn.send(hub.booking_snapshot(booking), "snapshot")
    unsubscribers = [
        _track_token(websocket, principal, conn),
        hub.watch(booking_channel(booking_id), conn.outbox),
    ]
    if principal.role is Role.CUSTOMER:
        unsubscribers.append(
            hub.watch(reporter_channel(principal.role.value, principal.sub), conn.outbox)
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
            metrics.frames_in.labels(type="invalid").inc()
            raise
        metrics.frames_in.labels(type=message_type(message)).inc()
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


async def operator_socket(websocket: WebSocket) -> None:
    principal = await _authenticate(websocket, {Role.OPERATOR})
    if principal is None:
        return
    hub: Hub = websocket.app.state.hub
    metrics = websocket.app.state.metrics
    await websocket.accept()
    conn = _connection(websocket, Role.OPERATOR)
    await hub.fleet.look_around()  # technicians online on other hubs
    # Snapshot and subscription with no await in between: no incident can slip past both.
    incidents = [msgspec.to_builtins(i) for i in hub.safety.open_incidents()]
    alerts = [msgspec.to_builtins(a) for a in hub.alerts.open_alerts()]
    snapshot = wire.Snapshot(fleet=hub.fleet.snapshot(), incidents=incidents, alerts=alerts)
    conn.send(snapshot, "snapshot")
    unsubscribers = [
        _track_token(websocket, principal, conn),
        hub.watch(FLEET_CHANNEL, conn.outbox),
        hub.watch(OPS_CHANNEL, conn.outbox),
    ]

    async def handle(text: str, received: float) -> None:
        try:
            message = wire.OPERATOR_FRAMES.decode(text)
        except wire.ProtocolError:
            metrics.frames_in.labels(type="invalid").inc()
            raise
        metrics.frames_in.labels(type=message_type(message)).inc()
        if isinstance(message, wire.AlertAck):
            await handle_alert_ack(hub, principal, message)
            return
        outcome = None
        if isinstance(message, wire.IncidentResolve):
            try:
                outcome = Outcome(message.outcome)
            except ValueError:
                allowed = ", ".join(o.value for o in Outcome)
                raise wire.ProtocolError(
                    wire.ErrorCode.INVALID_FIELD, f"outcome must be one of: {allowed}"
                ) from None
        action = IncidentAction.RESOLVE if outcome else IncidentAction.ACK
        try:
            await hub.safety.act(
                principal, message.incident, action, note=message.note, outcome=outcome
            )
        except IncidentNotFound as exc:
            raise wire.ProtocolError(wire.ErrorCode.NOT_FOUND, str(exc)) from None
        except IllegalIncidentTransition as exc:
            raise wire.ProtocolError(wire.ErrorCode.ILLEGAL_TRANSITION, str(exc)) from None

    try:
        await conn.run(handle)
    finally:
        for unsubscribe in unsubscribers:
            unsubscribe()


async def handle_alert_ack(hub: Hub, principal: Principal, message: wire.AlertAck) -> None:
    """Acknowledge an alert; every console (this one too) gets the updated ``alert``."""
    try:
        await hub.alerts.acknowledge(principal, message.alert, message.note)
    except AlertNotFound as exc:
        raise wire.ProtocolError(wire.ErrorCode.NOT_FOUND, str(exc)) from None
    except IllegalAlertTransition as exc:
        raise wire.ProtocolError(wire.ErrorCode.ILLEGAL_TRANSITION, str(exc)) from None


routes = [
    WebSocketRoute("/v1/ws/technician", technician_socket),
    WebSocketRoute("/v1/ws/bookings/{booking_id}", booking_socket),
    WebSocketRoute("/v1/ws/ops", operator_socket),
]
