"""WS /v1/ws/ops: the operator console.

A snapshot of the fleet, the open incidents and the open alerts, then the fleet and ops
channels live; operators acknowledge and resolve incidents and acknowledge alerts here.
"""

from __future__ import annotations

import msgspec
from starlette.websockets import WebSocket

from alerts.incident import IllegalIncidentTransition, IncidentAction, Outcome
from alerts.safety_alert import IllegalAlertTransition
from realtime import protocol as wire
from realtime.alerting import AlertNotFound
from realtime.auth import Principal, Role
from realtime.channels import FLEET_CHANNEL, OPS_CHANNEL
from realtime.hub import Hub
from realtime.safety import IncidentNotFound
from realtime.sockets.common import authenticate, message_type, open_connection, track_token, watch


async def operator_socket(websocket: WebSocket) -> None:
    principal = await authenticate(websocket, {Role.OPERATOR})
    if principal is None:
        return
    hub: Hub = websocket.app.state.hub
    metrics = websocket.app.state.metrics
    await websocket.accept()
    conn = open_connection(websocket, Role.OPERATOR)
    await hub.fleet.look_around()  # technicians online on other hubs
    # Snapshot and subscription with no await in between: no incident can slip past both.
    # An operator of a group sees the incidents and alerts of its cities (and of cities
    # without a group); the fleet is everyone's.
    incidents = [
        msgspec.to_builtins(i)
        for i in hub.safety.open_incidents()
        if hub.safety.visible_to(principal, i)
    ]
    alerts = [
        msgspec.to_builtins(a)
        for a in hub.alerts.open_alerts()
        if principal.watches(hub.alerts.audience_of(a))
    ]
    snapshot = wire.Snapshot(fleet=hub.fleet.snapshot(), incidents=incidents, alerts=alerts)
    conn.send(snapshot, "snapshot")
    unsubscribers = [
        track_token(websocket, principal, conn),
        watch(hub.bus, FLEET_CHANNEL, conn.outbox),
        watch(hub.bus, OPS_CHANNEL, conn.outbox, lambda m: principal.watches(m.audience)),
    ]

    async def handle(text: str, received: float) -> None:
        try:
            message = wire.OPERATOR_FRAMES.decode(text)
        except wire.ProtocolError:
            metrics.frame_in("invalid").inc()
            raise
        metrics.frame_in(message_type(message)).inc()
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
