"""The sockets are called straight from their routes (realtime/sockets/asgi.py): the frames
they send go to the server's own ``send``, through no middleware wrapper, and a path that
is not a socket still gets Starlette's answer."""

from __future__ import annotations

import gc

import pytest
from websockets.exceptions import InvalidStatus

from realtime.sockets.connection import Connection
from tests.conftest import RunningHub, receive_until


async def test_a_socket_sends_through_the_servers_own_send(hub: RunningHub) -> None:
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "tech-fast"))
    await receive_until(tech, "ack")
    customer_token = await hub.token("customer", "cust-fast", "b-fast")
    await hub.create_booking(id="b-fast", technician_id="tech-fast")
    customer = await hub.connect("/v1/ws/bookings/b-fast", customer_token)
    await receive_until(customer, "snapshot")
    connections = [o for o in gc.get_objects() if type(o) is Connection]
    assert {c.role for c in connections} >= {"technician", "customer"}
    for connection in connections:
        send = connection.websocket._send
        # Starlette's stack would hand over its wrappers (ServerErrorMiddleware's `_send`,
        # the exception wrappers' `sender`); uvicorn's protocol gives a bound method.
        assert getattr(send, "__self__", None) is not None, send
        assert "starlette" not in type(send.__self__).__module__, send
    assert connections[0].websocket.path_params in ({}, {"booking_id": "b-fast"})


async def test_a_path_that_is_no_socket_is_still_refused(hub: RunningHub) -> None:
    with pytest.raises(InvalidStatus):
        await hub.connect("/v1/ws/nothing-here", await hub.token("technician", "t"))
