"""What the three socket endpoints share: the handshake's authentication, the connection they
serve and the bus channels routed into it, revocation tracking, and the SOS a technician or
a customer raises.

A refusal is an accepted socket closed with a code and a reason (4401/4403/4404), never an
HTTP error during the handshake: browsers' WebSocket API shows a close reason, not a 403.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.websockets import WebSocket

from alerts.incident import IllegalIncidentTransition
from realtime import auth
from realtime import protocol as wire
from realtime.auth import AuthError, Principal, Role
from realtime.backends.base import Bus, BusMessage, Unsubscribe
from realtime.hub import Hub
from realtime.protocol import CloseCode
from realtime.safety import IncidentNotFound
from realtime.sockets.connection import Connection
from realtime.sockets.fanout import Outbox

log = logging.getLogger("doorstep.ws")


def watch(
    bus: Bus,
    channel: str,
    outbox: Outbox,
    accept: Callable[[BusMessage], bool] | None = None,
) -> Unsubscribe:
    """Route a bus channel into a connection's outbox; ``final`` messages close it after.
    ``accept``: which messages this connection gets (an operator's group)."""

    def deliver(message: BusMessage) -> None:
        if accept is not None and not accept(message):
            return
        outbox.put(
            message.kind, message.text, conflate_key=message.conflate_key, urgent=message.urgent
        )
        if message.final:
            outbox.close(CloseCode.NORMAL, "booking is over", discard_pending=False)

    return bus.subscribe(channel, deliver)


async def refuse(websocket: WebSocket, code: CloseCode, reason: str) -> None:
    """Accept, then close with ``code`` and ``reason`` (counted in the closes metric)."""
    # Accept first: a close frame with a code and reason is something clients can show;
    # an HTTP 403 during the handshake is not visible to browsers' WebSocket API.
    await websocket.accept()
    await websocket.close(code, wire.close_reason(reason))
    websocket.app.state.metrics.closes.labels(code=str(code.value)).inc()


async def authenticate(websocket: WebSocket, roles: set[Role]) -> Principal | None:
    """The caller by JWT (header or ``?token=``), or None once the socket was refused."""
    token = auth.bearer_token(
        websocket.headers.get("authorization"), websocket.query_params.get("token")
    )
    if token is None:
        await refuse(websocket, CloseCode.UNAUTHORIZED, "missing token")
        return None
    try:
        principal = auth.verify(websocket.app.state.keyring, token)
        websocket.app.state.tokens.check(principal)  # revoked (in memory, no await)
    except AuthError as exc:
        await refuse(websocket, CloseCode.UNAUTHORIZED, exc.reason)
        return None
    if principal.role not in roles:
        allowed = ", ".join(sorted(r.value for r in roles))
        await refuse(
            websocket,
            CloseCode.FORBIDDEN,
            f"role {principal.role.value} cannot open this socket ({allowed} can)",
        )
        return None
    return principal


def open_connection(websocket: WebSocket, role: Role) -> Connection:
    """The connection (limits, outbox, metrics) serving an accepted socket of ``role``."""
    state = websocket.app.state
    return Connection(websocket, role.value, state.settings, state.metrics)


def track_token(websocket: WebSocket, principal: Principal, conn: Connection) -> Unsubscribe:
    """Close this socket 4401 when its token expires or is revoked (realtime/revocation.py);
    call the result when the socket ends."""
    return websocket.app.state.tokens.track(principal, conn.outbox)


def message_type(message: object) -> str:
    """The wire ``type`` of a decoded frame (the label of the frames_in metric)."""
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
