"""The Python SDK against a real hub: dead zones, hub restarts, SOS fallbacks, watchers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from typing import Any

import pytest

from clients import (
    AuthError,
    Backoff,
    CustomerClient,
    NotFoundError,
    OperatorClient,
    SosNotDelivered,
    TechnicianClient,
)
from realtime.protocol import (
    CheckPrompt,
    EtaMessage,
    IncidentMessage,
    Position,
    Snapshot,
    Status,
)
from tests.conftest import RunningHub, ShiftedClock

HOME = (52.5200, 13.4050)


def quick() -> Backoff:
    """Reconnect within a fraction of a second: tests wait for hubs, not for backoff."""
    return Backoff(base_s=0.05, cap_s=0.3)


def closed_port() -> int:
    """A local port with nothing listening on it (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.02)


async def track_seqs(hub: RunningHub, technician_id: str) -> list[int]:
    async with hub.client(await hub.token("operator", "op-1")) as http:
        response = await http.get(f"/v1/technicians/{technician_id}/track")
        response.raise_for_status()
        return response.json()["properties"]["seqs"]


async def open_incidents(hub: RunningHub, token: str | None = None) -> list[dict[str, Any]]:
    async with hub.client(token or await hub.token("operator", "op-1")) as http:
        response = await http.get("/v1/incidents")
        response.raise_for_status()
        return response.json()["incidents"]


class StallingProxy:
    """A TCP proxy in front of the hub that can stall: bytes are held, not forwarded.

    A phone in a tunnel: the socket stays open on both ends, but nothing gets through.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self.flowing.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with suppress(Exception):
                sink.close()


@pytest.fixture
async def proxy(hub: RunningHub) -> AsyncIterator[StallingProxy]:
    running = StallingProxy(hub.port)
    await running.start()
    yield running
    running.flowing.set()
    await running.close()


# ---------------------------------------------------------------- technician: fixes


async def test_fixes_sent_through_a_hub_restart_are_all_stored_exactly_once(hub: RunningHub):
    token = await hub.token("technician", "t-dead-zone")
    t0 = time.time() - 600
    sent: list[int] = []
    async with TechnicianClient(hub.http, token, backoff=quick()) as tech:
        await tech.wait_connected(5)
        for i in range(60):
            sent.append(tech.send_fix(t0 + i, HOME[0] + i * 1e-5, HOME[1], acc=8))
            await asyncio.sleep(0.005)
        port = hub.port
        await hub.stop()  # mid-stream: some fixes are in flight, unacknowledged
        await eventually(lambda: not tech.connected, what="the client to notice the stop")
        for i in range(60, 260):  # the dead zone: send_fix keeps working, nothing is lost
            sent.append(tech.send_fix(t0 + i, HOME[0] + i * 1e-5, HOME[1], acc=8))
            await asyncio.sleep(0.002)
        # Meanwhile the client kept trying to reconnect and was refused.
        await eventually(
            lambda: tech.socket.last_close is not None and tech.socket.last_close[0] is None
        )
        assert tech.stats.buffered >= 200
        await hub.start()
        assert hub.port == port  # the same address: the client finds it again by itself
        for i in range(260, 300):
            sent.append(tech.send_fix(t0 + i, HOME[0] + i * 1e-5, HOME[1], acc=8))
            await asyncio.sleep(0.005)
        assert await tech.flush(timeout=15), tech.stats
        assert tech.socket.connections >= 2
        assert tech.stats.dropped == 0 and tech.stats.rejected == 0
        assert not tech.errors, tech.errors  # no stale_seq, no rate_limited: clean resume
    assert sent == list(range(300))
    assert await track_seqs(hub, "t-dead-zone") == sent


async def test_a_hub_with_a_smaller_batch_limit_still_gets_every_fix(hub_factory):
    hub = await hub_factory(max_batch_points=40)
    token = await hub.token("technician", "t-small-batches")
    t0 = time.time() - 600
    tech = TechnicianClient(hub.http, token, backoff=quick())
    for i in range(300):  # buffered before the first connection, as after a cold start offline
        tech.send_fix(t0 + i, HOME[0], HOME[1] + i * 1e-5)
    async with tech:
        assert await tech.flush(timeout=20), tech.stats
    assert tech.buffer.max_batch <= 40
    assert await track_seqs(hub, "t-small-batches") == list(range(300))


async def test_a_hub_that_paces_frames_over_its_rate_limit_still_gets_every_fix(hub_factory):
    hub = await hub_factory(rate_per_s=2, rate_burst=2)
    token = await hub.token("technician", "t-throttled")
    t0 = time.time() - 600
    async with TechnicianClient(hub.http, token, backoff=quick()) as tech:
        for i in range(40):  # 40 fixes in 0.4 s: several frames over 2 frames/s
            tech.send_fix(t0 + i, HOME[0], HOME[1] + i * 1e-5)
            await asyncio.sleep(0.01)
        assert await tech.flush(timeout=15), tech.stats
        assert not tech.errors, tech.errors  # delayed by the hub, never refused
        assert tech.socket.connections == 1  # and it kept to the hub's pace: no flood close
    assert await track_seqs(hub, "t-throttled") == list(range(40))


async def test_a_client_that_lost_its_seq_counter_continues_above_the_hubs(hub: RunningHub):
    token = await hub.token("technician", "t-reinstalled")
    t0 = time.time() - 600
    async with TechnicianClient(hub.http, token, backoff=quick()) as first:
        for i in range(10):
            first.send_fix(t0 + i, *HOME)
        assert await first.flush(timeout=10)
    # A reinstalled app: a fresh counter would start at 0 again, below what the hub has.
    second = TechnicianClient(hub.http, token, backoff=quick())
    for i in range(10, 15):
        second.send_fix(t0 + i, *HOME)
    async with second:
        assert await second.flush(timeout=10)
    assert await track_seqs(hub, "t-reinstalled") == list(range(15))


async def test_an_invalid_fix_is_refused_at_the_call(hub: RunningHub):
    tech = TechnicianClient(hub.http, await hub.token("technician", "t-1"))
    with pytest.raises(ValueError, match="lat"):
        tech.send_fix(time.time(), 91.0, 13.4)
    with pytest.raises(ValueError, match="acc"):
        tech.send_fix(time.time(), 52.5, 13.4, acc=-1)
    await tech.close()


async def test_a_refused_token_stops_the_client_with_an_auth_error(hub: RunningHub):
    tech = TechnicianClient(hub.http, "not-a-token", backoff=quick())
    await tech.start()
    with pytest.raises(AuthError):
        await asyncio.wait_for(tech.wait_closed(), 5)
    assert tech.socket.connections == 1  # no reconnect storm with a token that cannot work
    await tech.close()


async def test_the_technician_hears_about_its_bookings(hub: RunningHub):
    token = await hub.token("technician", "t-booked")
    async with TechnicianClient(hub.http, token, backoff=quick()) as tech:
        await tech.wait_connected(5)
        booking = await hub.create_booking(technician_id="t-booked")
        event = await asyncio.wait_for(anext(aiter(tech)), 5)
        assert event.booking["id"] == booking["id"]
        assert set(tech.bookings) == {booking["id"]}
        await hub.post(f"/v1/bookings/{booking['id']}/cancel")
        await eventually(lambda: not tech.bookings, what="the cancelled booking to leave")


async def test_the_technician_answers_are_you_ok_when_a_visit_runs_over(hub_factory):
    clock = ShiftedClock()
    hub = await hub_factory(
        clock=clock, watchdog_interval_s=0.05, overdue_margin_s=0, check_timeout_s=5
    )
    token = await hub.token("technician", "t-visit")
    operator_token = await hub.token("operator", "op-1")  # minted before the clock moves
    booking = await hub.create_booking(technician_id="t-visit", expected_duration_s=60)
    for step in ("en_route", "arrive", "start"):
        assert (await hub.post(f"/v1/bookings/{booking['id']}/{step}")).status_code == 200
    prompts: list[CheckPrompt] = []
    async with TechnicianClient(hub.http, token, backoff=quick()) as tech:
        tech.add_listener(lambda e: prompts.append(e) if isinstance(e, CheckPrompt) else None)
        await tech.wait_connected(5)
        clock.advance(61)  # past the visit's expected 60 s
        await eventually(lambda: bool(prompts), what="the check")
        assert prompts[0].booking_id == booking["id"]
        await tech.answer_check(prompts[0].id)  # returns once the hub stored the answer
    assert await open_incidents(hub, operator_token) == []


# ---------------------------------------------------------------- technician: SOS


async def test_sos_goes_over_http_when_the_socket_cannot_connect(hub: RunningHub):
    token = await hub.token("technician", "t-no-socket")
    # HTTP reaches the hub; the WebSocket address is a port nobody listens on.
    tech = TechnicianClient(
        hub.http, token, ws_base_url=f"ws://127.0.0.1:{closed_port()}", backoff=quick()
    )
    async with tech:
        receipt = await tech.sos(note="help", lat=HOME[0], lon=HOME[1])
        assert not tech.connected
    assert receipt.via == "http" and receipt.status == "open"
    [incident] = await open_incidents(hub)
    assert incident["id"] == receipt.incident
    assert incident["client_id"] == receipt.id
    assert incident["reporter"] == {"sub": "t-no-socket", "role": "technician"}


async def test_sos_without_an_ack_on_a_stalled_socket_is_retried_over_http_as_one_incident(
    hub: RunningHub, proxy: StallingProxy
):
    token = await hub.token("technician", "t-tunnel")
    tech = TechnicianClient(
        hub.http,
        token,
        ws_base_url=f"ws://127.0.0.1:{proxy.port}",
        sos_ack_timeout_s=0.5,
        backoff=quick(),
    )
    async with tech:
        tech.send_fix(time.time(), *HOME)
        assert await tech.flush(timeout=5)  # the socket works...
        proxy.flowing.clear()  # ...until the tunnel: the SOS frame goes out and gets stuck
        started = time.monotonic()
        receipt = await tech.sos(note="stuck in a lift")
        assert receipt.via == "http"
        assert time.monotonic() - started < 3
        # The tunnel ends: the stuck socket frame arrives too, and a retry of the same press
        # over the socket is acknowledged with the same incident.
        proxy.flowing.set()
        again = await tech.sos(note="stuck in a lift", sos_id=receipt.id)
        assert again.via == "socket"
        assert again.incident == receipt.incident
    incidents = await open_incidents(hub)
    assert [i["id"] for i in incidents] == [receipt.incident]


async def test_sos_raises_when_nothing_answers_within_the_deadline(hub: RunningHub):
    token = await hub.token("technician", "t-offline")
    nowhere = closed_port()
    tech = TechnicianClient(
        f"http://127.0.0.1:{nowhere}", token, sos_deadline_s=1.0, backoff=quick()
    )
    async with tech:
        started = time.monotonic()
        with pytest.raises(SosNotDelivered):
            await tech.sos(note="no network at all")
        assert time.monotonic() - started < 3


async def test_a_malformed_sos_fails_at_once_instead_of_being_retried(hub: RunningHub):
    async with TechnicianClient(hub.http, await hub.token("technician", "t-5")) as tech:
        with pytest.raises(ValueError, match="together"):
            await tech.sos(lat=52.5)
        with pytest.raises(ValueError):
            await tech.sos(sos_id="not a valid id!")
        with pytest.raises(ValueError):
            await tech.sos(note="x" * 2001)


async def test_a_pocket_press_can_be_cancelled(hub: RunningHub):
    token = await hub.token("technician", "t-pocket")
    async with TechnicianClient(hub.http, token, backoff=quick()) as tech:
        await tech.wait_connected(5)
        receipt = await tech.sos()
        assert receipt.via == "socket"
        cancelled = await tech.cancel_sos(receipt.id)
        assert cancelled.status == "cancelled" and cancelled.incident == receipt.incident
    assert await open_incidents(hub) == []


# ---------------------------------------------------------------- customer


async def test_the_customer_sees_positions_and_the_eta_and_stops_when_the_booking_ends(
    hub: RunningHub,
):
    booking = await hub.create_booking(
        technician_id="t-driver", destination={"lat": HOME[0], "lon": HOME[1]}
    )
    await hub.post(f"/v1/bookings/{booking['id']}/en_route")
    customer_token = await hub.token("customer", "cust-1", booking=booking["id"])
    events: list[Any] = []

    async def watch(customer: CustomerClient) -> None:
        async for event in customer:
            events.append(event)

    async with (
        CustomerClient(hub.http, customer_token, booking["id"], backoff=quick()) as customer,
        TechnicianClient(
            hub.http, await hub.token("technician", "t-driver"), backoff=quick()
        ) as tech,
    ):
        watcher = asyncio.create_task(watch(customer))
        t0 = time.time() - 30
        for i in range(10):  # driving north towards HOME, 2 km out, 10 m/s
            tech.send_fix(t0 + i * 3, HOME[0] - 0.018 + i * 0.00027, HOME[1], acc=5, speed=10)
        assert await tech.flush(timeout=10)
        await eventually(lambda: customer.eta is not None, what="an ETA")
        await eventually(lambda: customer.position is not None and customer.position.seq == 9)
        await hub.post(f"/v1/bookings/{booking['id']}/cancel")
        await asyncio.wait_for(watcher, 10)  # iteration ends by itself: the booking is over

    assert isinstance(events[0], Snapshot) and events[0].booking["status"] == "en_route"
    assert any(isinstance(e, Position) for e in events)
    etas = [e for e in events if isinstance(e, EtaMessage)]
    assert etas and all(e.distance_m > 1000 for e in etas)
    assert isinstance(events[-1], Status) and events[-1].status == "cancelled"
    assert customer.over and customer.failure is None
    assert customer.socket.connections == 1  # not reconnected after close 1000


async def test_the_customer_reconnects_through_a_hub_restart_and_resyncs(hub: RunningHub):
    booking = await hub.create_booking(technician_id="t-2")
    token = await hub.token("customer", "cust-1", booking=booking["id"])
    async with CustomerClient(hub.http, token, booking["id"], backoff=quick()) as customer:
        first = await asyncio.wait_for(anext(aiter(customer)), 5)
        assert isinstance(first, Snapshot)
        await hub.restart()
        second = await asyncio.wait_for(anext(aiter(customer)), 10)
        assert isinstance(second, Snapshot) and second.booking["id"] == booking["id"]
        assert customer.socket.connections == 2
        assert customer.status == "assigned"


async def test_a_customer_token_for_another_booking_or_a_missing_one_is_refused(hub: RunningHub):
    booking = await hub.create_booking()
    token = await hub.token("customer", "cust-1", booking=booking["id"])
    other = CustomerClient(hub.http, token, "someone-elses", backoff=quick())
    await other.start()
    with pytest.raises(AuthError) as refused:
        async for _ in other:
            pass
    assert refused.value.forbidden
    await other.close()

    missing_token = await hub.token("customer", "cust-1", booking="no-such-booking")
    missing = CustomerClient(hub.http, missing_token, "no-such-booking", backoff=quick())
    await missing.start()
    with pytest.raises(NotFoundError):
        await asyncio.wait_for(missing.wait_closed(), 5)
    await missing.close()


async def test_a_customer_sos_is_tied_to_the_booking(hub: RunningHub):
    booking = await hub.create_booking(technician_id="t-3")
    token = await hub.token("customer", "cust-1", booking=booking["id"])
    async with CustomerClient(hub.http, token, booking["id"], backoff=quick()) as customer:
        await customer.wait_connected(5)
        receipt = await customer.sos(note="the technician is threatening me")
    assert receipt.via == "socket"
    [incident] = await open_incidents(hub)
    assert incident["booking_id"] == booking["id"]
    assert incident["reporter"] == {"sub": "cust-1", "role": "customer"}


# ---------------------------------------------------------------- operator


async def test_the_operator_sees_an_sos_at_once_then_acks_and_resolves_it(hub: RunningHub):
    ops = OperatorClient(hub.http, await hub.token("operator", "op-1"), backoff=quick())
    incidents: list[IncidentMessage] = []
    ops.add_listener(lambda e: incidents.append(e) if isinstance(e, IncidentMessage) else None)
    async with (
        ops,
        TechnicianClient(
            hub.http, await hub.token("technician", "t-help"), backoff=quick()
        ) as tech,
    ):
        snapshot = await asyncio.wait_for(anext(aiter(ops)), 5)
        assert isinstance(snapshot, Snapshot) and ops.incidents == {}
        receipt = await tech.sos(note="help", lat=HOME[0], lon=HOME[1])
        await eventually(lambda: receipt.incident in ops.incidents, what="the incident")
        assert ops.incidents[receipt.incident]["status"] == "open"

        acked = await ops.ack(receipt.incident, note="calling the technician")
        assert acked["status"] == "acknowledged"
        assert ops.incidents[receipt.incident]["status"] == "acknowledged"

        resolved = await ops.resolve(receipt.incident, "safe", note="false alarm, all fine")
        assert resolved["status"] == "resolved" and resolved["outcome"] == "safe"
        assert receipt.incident not in ops.incidents
        await eventually(
            lambda: any(m.incident["status"] == "resolved" for m in incidents),
            what="the resolve broadcast",
        )
        # A late broadcast of the ack must not bring the resolved incident back.
        await asyncio.sleep(0.2)
        assert receipt.incident not in ops.incidents
    reasons = [m.reason for m in incidents]
    assert reasons[:3] == ["raised", "ack", "resolve"]


async def test_the_operator_resyncs_open_incidents_from_the_snapshot_after_a_restart(
    hub: RunningHub,
):
    ops = OperatorClient(hub.http, await hub.token("operator", "op-1"), backoff=quick())
    async with ops:
        await ops.wait_connected(5)
        tech = TechnicianClient(hub.http, await hub.token("technician", "t-4"))
        receipt = await tech.sos()  # over the socket or HTTP, whichever answers
        await tech.close()
        await eventually(lambda: receipt.incident in ops.incidents)
        await hub.stop()
        await eventually(lambda: not ops.connected)
        ops.incidents.clear()  # forget it here: only the snapshot can bring it back
        await hub.start()
        await eventually(lambda: receipt.incident in ops.incidents, what="the resync")
        assert ops.socket.connections == 2


async def test_acting_on_an_unknown_incident_is_a_clear_error(hub: RunningHub):
    async with OperatorClient(hub.http, await hub.token("operator", "op-1")) as ops:
        with pytest.raises(NotFoundError):
            await ops.ack("no-such-incident")
