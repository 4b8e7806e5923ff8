"""``GET /asyncapi.json``: the three sockets as an AsyncAPI 3.0 document, from the protocol
structs (``realtime/protocol.py``), never written by hand.

What a socket accepts is the union its frame decoder is built from (``TechnicianInbound``,
``CustomerInbound``, ``OperatorInbound``); what it sends is listed in ``SOCKETS``. The
channels come from the app's own WebSocket routes, so a socket added without an entry here
is a ``KeyError`` (and a failing test).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, WebSocketRoute

from realtime import protocol as wire
from realtime.auth import Role
from realtime.http.openapi import cached_document

ASYNCAPI_VERSION = "3.0.0"
SCHEMA_REF = "#/components/schemas/{name}"


class Socket(msgspec.Struct, frozen=True):
    """One socket: who may open it, the frames it accepts and the frames it sends."""

    summary: str
    roles: frozenset[Role]
    accepts: Any  # the union of its frame decoder
    sends: tuple[type[msgspec.Struct], ...]


SOCKETS: dict[str, Socket] = {
    "/v1/ws/technician": Socket(
        "A technician streams fixes and raises SOS; gets acks, bookings and checks",
        frozenset({Role.TECHNICIAN}),
        wire.TechnicianInbound,
        (
            wire.Ack,
            wire.SosAck,
            wire.SosStatus,
            wire.BookingMessage,
            wire.CheckPrompt,
            wire.CheckAck,
            wire.Error,
        ),
    ),
    "/v1/ws/bookings/{booking_id}": Socket(
        "A customer (or an operator) watches one booking: position, ETA, status",
        frozenset({Role.CUSTOMER, Role.OPERATOR}),
        wire.CustomerInbound,
        (
            wire.Snapshot,
            wire.Position,
            wire.EtaMessage,
            wire.Status,
            wire.SosAck,
            wire.SosStatus,
            wire.Error,
        ),
    ),
    "/v1/ws/ops": Socket(
        "Operators: every incident, alert and technician position live",
        frozenset({Role.OPERATOR}),
        wire.OperatorInbound,
        (
            wire.Snapshot,
            wire.IncidentMessage,
            wire.IncidentLocationMessage,
            wire.Fleet,
            wire.Alert,
            wire.Error,
        ),
    ),
}


def accepted_structs(socket: Socket) -> tuple[type[msgspec.Struct], ...]:
    """The structs of a socket's inbound union, in its order."""
    return typing.get_args(socket.accepts)


def message_name(kind: type[msgspec.Struct]) -> str:
    """The frame's ``type`` (its msgspec tag), the message's name in the document."""
    tag = msgspec.inspect.type_info(kind).tag  # type: ignore[attr-defined]
    if tag is None:
        raise ValueError(f"{kind.__name__} has no type tag: it cannot be a frame")
    return str(tag)


def _channel_id(path: str) -> str:
    return path.strip("/").replace("/", "_").replace("{", "").replace("}", "")


def asyncapi_document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of these routes' sockets; KeyError names one with no entry."""
    paths = [route.path for route in routes if isinstance(route, WebSocketRoute)]
    missing = [path for path in paths if path not in SOCKETS]
    if missing:
        raise KeyError(f"sockets with no entry in realtime.http.asyncapi.SOCKETS: {missing}")
    structs: list[Any] = []
    for path in paths:
        structs += [*accepted_structs(SOCKETS[path]), *SOCKETS[path].sends]
    structs = list(dict.fromkeys(structs))
    _, schemas = msgspec.json.schema_components(structs, ref_template=SCHEMA_REF)
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for path in paths:
        socket = SOCKETS[path]
        channel = _channel_id(path)
        channel_messages: dict[str, Any] = {}
        for direction, kinds in (("in", accepted_structs(socket)), ("out", socket.sends)):
            for kind in kinds:
                key = f"{direction}_{message_name(kind)}"
                # Two structs share a tag across directions ("ack"): keyed by direction too.
                messages[key] = _message(kind, direction)
                channel_messages[key] = {"$ref": f"#/components/messages/{key}"}
        channels[channel] = _channel(path, socket, channel_messages)
        for action, direction, kinds in (
            ("receive", "in", accepted_structs(socket)),
            ("send", "out", socket.sends),
        ):
            operations[f"{channel}_{action}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel}"},
                "summary": (
                    "Frames the hub accepts on this socket"
                    if action == "receive"
                    else "Frames the hub sends on this socket"
                ),
                "messages": [
                    {"$ref": f"#/channels/{channel}/messages/{direction}_{message_name(k)}"}
                    for k in kinds
                ],
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Doorstep hub sockets",
            "version": str(wire.PROTOCOL_VERSION),
            "description": (
                "JSON text frames, one object per frame, each with a type. The prose is "
                "docs/protocol.md; the REST API is /openapi.json."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "token": {
                    "type": "httpApiKey",
                    "name": "token",
                    "in": "query",
                    "description": "A JWT from POST /v1/tokens (or Authorization: Bearer)",
                }
            },
        },
    }


def _message(kind: type[msgspec.Struct], direction: str) -> dict[str, Any]:
    doc = (kind.__doc__ or "").strip().split("\n\n")[0]
    message: dict[str, Any] = {
        "name": message_name(kind),
        "title": f"{message_name(kind)} ({'to' if direction == 'in' else 'from'} the hub)",
        "payload": {"$ref": SCHEMA_REF.format(name=kind.__name__)},
    }
    if doc:
        message["summary"] = " ".join(doc.split())
    return message


def _channel(path: str, socket: Socket, messages: dict[str, Any]) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "address": path.replace("{booking_id}", "{bookingId}"),
        "summary": socket.summary,
        "description": "Opened by: " + ", ".join(sorted(r.value for r in socket.roles)) + ".",
        "messages": messages,
    }
    if "{booking_id}" in path:
        channel["parameters"] = {"bookingId": {"description": "The booking watched"}}
    return channel


async def asyncapi_json(request: Request) -> Response:
    return cached_document(request, "asyncapi_document", asyncapi_document)
