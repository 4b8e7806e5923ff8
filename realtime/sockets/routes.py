"""The three WebSocket routes the app mounts (paths are the wire protocol: docs/protocol.md)."""

from __future__ import annotations

from starlette.routing import WebSocketRoute

from realtime.sockets.booking import booking_socket
from realtime.sockets.ops import operator_socket
from realtime.sockets.technician import technician_socket

routes: list[WebSocketRoute] = [
    WebSocketRoute("/v1/ws/technician", technician_socket),
    WebSocketRoute("/v1/ws/bookings/{booking_id}", booking_socket),
    WebSocketRoute("/v1/ws/ops", operator_socket),
]
