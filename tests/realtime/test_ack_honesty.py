"""Acks never cover a fix the hub did not store (issue 11, item 3), over a real hub.

The invariant (docs/protocol.md, "Acks"): after any sequence of frames, every seq at or
below the highest ack is stored, unless the hub refused it for good with an error naming
that seq. Each test drives a raw WebSocket (or the SDK) the way the defect was found: frames
over the rate limit, a history writer with no room, an ``"sos"`` that is not an SOS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Iterable
from typing import Any

from websockets.exceptions import ConnectionClosed

from clients import TechnicianClient
from clients._connection import Backoff
from tests.conftest import RunningHub, receive_json, receive_until

# Burst and rate small enough that a few dozen frames are over the limit.
SLOW = {"rate_per_s": 5, "rate_burst": 5}
FOR_GOOD = {"out_of_range", "invalid_field", "timestamp_in_future", "timestamp_too_old"}


def location(seq: int, **extra: Any) -> str:
    body = {"type": "location", "seq": seq, "t": time.time() - 1, "lat": 52.5, "lon": 13.4}
    return json.dumps({**body, **extra})


def batch(seqs: Iterable[int]) -> str:
    now = time.time() - 1
    points = [{"seq": s, "t": now, "lat": 52.5, "lon": 13.4} for s in seqs]
    return json.dumps({"type": "batch", "points": points})


async def technician(hub: RunningHub, sub: str) -> Any:
    ws = await hub.connect("/v1/ws/technician", await hub.token("technician", sub))
    assert (await receive_json(ws))["type"] == "ack"
    return ws


async def stored_seqs(hub: RunningHub, sub: str) -> list[int]:
    """Every stored seq of the technician, in order, with duplicates (through the Store)."""
    return [f.seq for f in await hub.hub.store.track(sub, -math.inf, math.inf, -1)]


class Reader:
    """Reads a technician socket in the background: the highest ack, errors, the close."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.highest_ack = -1
        self.errors: list[dict[str, Any]] = []
        self.sos_acks: list[str] = []
        self.close_code: int | None = None
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for text in self.ws:
                message = json.loads(text)
                if message["type"] == "ack":
                    self.highest_ack = max(self.highest_ack, message["seq"])
                elif message["type"] == "error":
                    self.errors.append(message)
                elif message["type"] == "sos_ack":
                    self.sos_acks.append(message["id"])
                self.changed.set()
        except ConnectionClosed:
            pass
        rcvd = self.ws.protocol.close_rcvd
        self.close_code = rcvd.code if rcvd is not None else None
        self.changed.set()

    async def until(self, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            assert left > 0, f"timed out: ack {self.highest_ack}, errors {self.errors[-3:]}"
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    @property
    def closed(self) -> bool:
        return self.task.done()


async def assert_acks_are_honest(hub: RunningHub, sub: str, highest_ack: int, refused: set[int]):
    """Every seq from 1 to the highest ack is stored once, or was refused for good."""
    seqs = await stored_seqs(hub, sub)
    assert len(seqs) == len(set(seqs)), "a fix was stored twice"
    missing = [s for s in range(1, highest_ack + 1) if s not in set(seqs) and s not in refused]
    assert not missing, f"acked up to {highest_ack} but not stored: {missing[:20]}"


def refused_for_good(errors: list[dict[str, Any]]) -> set[int]:
    return {e["seq"] for e in errors if e["code"] in FOR_GOOD and e.get("seq") is not None}


# ------------------------------------------------------------------ (a) over the rate


async def test_100_single_frames_as_fast_as_possible_are_all_stored_and_acked(hub):
    """The defect as found: 100 fixes at once against the default limit (burst 60)."""
    ws = await technician(hub, "t-fast")
    reader = Reader(ws)
    for seq in range(1, 101):
        await ws.send(location(seq))
    await reader.until(lambda: reader.highest_ack >= 100, timeout=15)
    assert reader.errors == []  # delayed, not refused
    await assert_acks_are_honest(hub, "t-fast", reader.highest_ack, set())
    assert await stored_seqs(hub, "t-fast") == list(range(1, 101))


async def test_300_frames_at_100_per_s_never_ack_an_unstored_fix(hub):
    """Three times the default rate for three seconds: paced (perhaps closed as a flood at
    the end); either way the acks, also the one a new connection starts with, are honest."""
    ws = await technician(hub, "t-steady")
    reader = Reader(ws)
    for seq in range(1, 301):
        try:
            await ws.send(location(seq))
        except ConnectionClosed:
            break
        await asyncio.sleep(0.01)
    await reader.until(lambda: reader.highest_ack >= 300 or reader.closed, timeout=30)
    await asyncio.sleep(0.3)  # a last write's ack
    await assert_acks_are_honest(hub, "t-steady", reader.highest_ack, set())
    assert reader.errors == []
    again = await hub.connect("/v1/ws/technician", await hub.token("technician", "t-steady"))
    resume = await receive_json(again)
    assert resume["type"] == "ack" and resume["seq"] >= reader.highest_ack
    await assert_acks_are_honest(hub, "t-steady", resume["seq"], set())


async def test_two_technicians_flooding_at_once_each_get_honest_acks(hub_factory):
    hub = await hub_factory(**SLOW)
    sockets = [await technician(hub, sub) for sub in ("t-a", "t-b")]
    readers = [Reader(ws) for ws in sockets]
    for seq in range(1, 31):  # 30 each at once: 25 over the limit, ~5 s of backlog
        for ws in sockets:
            await ws.send(location(seq))
    for reader in readers:
        await reader.until(lambda r=reader: r.highest_ack >= 30, timeout=15)
    for sub, reader in zip(("t-a", "t-b"), readers, strict=True):
        await assert_acks_are_honest(hub, sub, reader.highest_ack, set())
        assert await stored_seqs(hub, sub) == list(range(1, 31))


async def test_frames_over_the_rate_are_delayed_in_order_with_bad_ones_among_them(hub_factory):
    """A bad fix in the backlog is refused for good (named); the ones around it are stored."""
    hub = await hub_factory(**SLOW)
    ws = await technician(hub, "t-mixed")
    reader = Reader(ws)
    for seq in range(1, 21):
        await ws.send(location(seq, lat=91) if seq == 12 else location(seq))
    await reader.until(lambda: reader.highest_ack >= 20, timeout=15)
    assert [(e["code"], e["seq"]) for e in reader.errors] == [("out_of_range", 12)]
    await assert_acks_are_honest(hub, "t-mixed", 20, refused_for_good(reader.errors))
    assert await stored_seqs(hub, "t-mixed") == [s for s in range(1, 21) if s != 12]


# ------------------------------------------------------------------ (b) the SDK


class SlowRepliesProxy:
    """A TCP proxy that delivers the hub's bytes ``delay_s`` late (in order): a phone
    network's round trip, so a client has sent more frames before it reads an answer."""

    def __init__(self, upstream_port: int, delay_s: float) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> SlowRepliesProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        assert self._server is not None
        self._server.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._spawn(self._pump(reader, up_writer, 0.0))
        self._spawn(self._pump(up_reader, writer, self.delay_s))

    async def _pump(self, source: Any, sink: Any, delay_s: float) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                sink.write(data)
                await sink.drain()

        self._spawn(deliver())
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                queue.put_nowait((time.monotonic() + delay_s, data))


async def test_the_sdk_sending_300_fixes_fast_to_a_strict_hub_loses_none(hub_factory):
    """Over a 150 ms reply delay the SDK has sent more frames before it hears of a refusal:
    a refused frame followed by an accepted one lost the refused fixes under the ack."""
    hub = await hub_factory(rate_per_s=5, rate_burst=5)
    token = await hub.token("technician", "t-sdk")
    t0 = time.time() - 600
    backoff = Backoff(base_s=0.05, cap_s=0.2, flood_delay_s=0.2)
    async with SlowRepliesProxy(hub.port, delay_s=0.15) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        async with TechnicianClient(url, token, backoff=backoff) as tech:
            await tech.wait_connected(5)
            for i in range(300):  # 300 fixes in ~3 s: dozens of frames over 5 frames/s
                tech.send_fix(t0 + i, 52.5, 13.4 + i * 1e-5)
                await asyncio.sleep(0.01)
            assert await tech.flush(timeout=40), tech.stats
            assert tech.stats.dropped == 0 and tech.stats.rejected == 0
            assert tech.socket.connections == 1, "closed as a flood: the SDK ignored the pace"
    assert await stored_seqs(hub, "t-sdk") == list(range(300))


# ------------------------------------------------------------------ (c) SOS by decoded type


async def test_a_location_with_an_sos_field_is_paced_like_any_location(hub_factory):
    hub = await hub_factory(**SLOW)
    ws = await technician(hub, "t-fake-sos")
    reader = Reader(ws)
    started = time.monotonic()
    for seq in range(1, 21):
        await ws.send(location(seq, sos=1, note="sos sos"))
    await reader.until(lambda: reader.highest_ack >= 20, timeout=15)
    # 5 in the burst, 15 more at 5 frames/s: ~3 s, not the instant an exempt frame gets.
    assert time.monotonic() - started >= 2.4
    assert await stored_seqs(hub, "t-fake-sos") == list(range(1, 21))


async def test_a_customer_frame_mentioning_sos_is_rate_limited_like_any_frame(hub_factory):
    hub = await hub_factory(**SLOW, flood_max_refused=1000)
    await hub.create_booking(id="b-fake", technician_id="t-1")
    ws = await hub.connect(
        "/v1/ws/bookings/b-fake", await hub.token("customer", "cust-1", "b-fake")
    )
    assert (await receive_json(ws))["type"] == "snapshot"
    for _ in range(20):
        await ws.send(json.dumps({"type": "location", "sos": 1, "note": '"sos'}))
    codes = [(await receive_until(ws, "error"))["code"] for _ in range(20)]
    assert codes.count("rate_limited") >= 10, codes
    # A real SOS in the same flood is still handled.
    await ws.send(json.dumps({"type": "sos", "id": "cust-real", "t": time.time()}))
    assert (await receive_until(ws, "sos_ack"))["id"] == "cust-real"


async def test_real_sos_frames_in_a_technician_flood_are_handled_then_it_is_closed(hub_factory):
    hub = await hub_factory(**SLOW)
    ws = await technician(hub, "t-flood-sos")
    reader = Reader(ws)
    for seq in range(1, 56):  # ~10 s of backlog at 5 frames/s: the limit
        await ws.send(location(seq))
    with contextlib.suppress(ConnectionClosed):  # closed as a flood somewhere in here
        for n in range(10):
            await ws.send(json.dumps({"type": "sos", "id": f"flood-{n}", "t": time.time()}))
            await asyncio.sleep(0.01)
        for seq in range(56, 120):
            await ws.send(location(seq))
    await reader.until(lambda: reader.closed, timeout=15)
    assert reader.close_code == 1008
    assert reader.sos_acks and reader.sos_acks[0] == "flood-0"
    assert len(hub.hub.safety.open_incidents()) == len(reader.sos_acks)
    await assert_acks_are_honest(hub, "t-flood-sos", reader.highest_ack, set())


# ------------------------------------------------------------------ (d) server_busy


class StalledWriter:
    """Holds the history writer's store writes until ``release``."""

    def __init__(self, hub: RunningHub) -> None:
        self.gate = asyncio.Event()
        store = hub.hub.store
        self._append = store.append_fixes

        async def append(fixes: list[Any]) -> None:
            await self.gate.wait()
            await self._append(fixes)

        store.append_fixes = append

    def release(self) -> None:
        self.gate.set()


async def test_server_busy_names_the_seq_and_no_ack_passes_it_until_it_is_resent(hub_factory):
    hub = await hub_factory(history_pending_limit=100, rate_burst=1000, rate_per_s=1000)
    stalled = StalledWriter(hub)
    ws = await technician(hub, "t-busy")
    reader = Reader(ws)
    for seq in range(1, 151):
        await ws.send(location(seq))
    await reader.until(lambda: len(reader.errors) >= 1, timeout=10)
    await asyncio.sleep(0.3)  # the rest of the refusals
    busy = [e for e in reader.errors if e["code"] == "server_busy"]
    assert busy and len(busy) == len(reader.errors)
    hole = busy[0]["seq"]
    assert 1 < hole < 150 and all(e["seq"] == hole for e in busy), busy  # all point there
    stalled.release()
    await reader.until(lambda: reader.highest_ack >= hole - 1, timeout=10)
    assert reader.highest_ack == hole - 1

    # Room again, but a later fix does not jump over the refused one...
    reader.errors.clear()
    await ws.send(location(151))
    await reader.until(lambda: reader.errors, timeout=5)
    assert [(e["code"], e["seq"]) for e in reader.errors] == [("server_busy", hole)]
    await asyncio.sleep(0.2)
    assert reader.highest_ack == hole - 1
    # ...until the client resends from it (overlapping what is stored: skipped).
    await ws.send(batch(range(hole - 5, 152)))
    await reader.until(lambda: reader.highest_ack >= 151, timeout=10)
    assert await stored_seqs(hub, "t-busy") == list(range(1, 152))  # each exactly once


async def test_a_busy_batch_names_its_first_fresh_seq(hub_factory):
    hub = await hub_factory(history_pending_limit=100)
    stalled = StalledWriter(hub)
    ws = await technician(hub, "t-busy-batch")
    reader = Reader(ws)
    await ws.send(batch(range(1, 101)))  # fills the queue (or goes to the stalled write)
    await ws.send(batch(range(1, 211)))  # 1..100 overlap, 101.. fresh: no room for them
    await reader.until(lambda: reader.errors, timeout=5)
    assert [(e["code"], e["seq"]) for e in reader.errors] == [("server_busy", 101)]
    await ws.send(location(300))  # above the hole: refused, naming it
    await reader.until(lambda: len(reader.errors) >= 2, timeout=5)
    assert (reader.errors[1]["code"], reader.errors[1]["seq"]) == ("server_busy", 101)
    stalled.release()
    await reader.until(lambda: reader.highest_ack >= 100, timeout=10)
    await ws.send(batch(range(90, 201)))  # 100 fresh: as many as the queue holds
    await reader.until(lambda: reader.highest_ack >= 200, timeout=10)
    await ws.send(batch(range(195, 211)))
    await reader.until(lambda: reader.highest_ack >= 210, timeout=10)
    assert await stored_seqs(hub, "t-busy-batch") == list(range(1, 211))


async def test_the_sdk_through_a_stalled_history_writer_stores_everything_once(hub_factory):
    hub = await hub_factory(history_pending_limit=100)
    stalled = StalledWriter(hub)
    token = await hub.token("technician", "t-sdk-busy")
    t0 = time.time() - 600
    async with TechnicianClient(hub.http, token, backoff=Backoff(base_s=0.05, cap_s=0.2)) as tech:
        # Batches bigger than the whole history queue could never fit (the default queue
        # holds 100,000 fixes, a batch at most 500).
        tech.buffer.max_batch = 50
        await tech.wait_connected(5)
        for i in range(300):
            tech.send_fix(t0 + i, 52.5, 13.4)
            await asyncio.sleep(0.002)
        await asyncio.sleep(1.5)
        assert tech.errors["server_busy"] >= 1
        assert tech.stats.acked_seq < 300
        stalled.release()
        assert await tech.flush(timeout=20), tech.stats
    assert await stored_seqs(hub, "t-sdk-busy") == list(range(300))


async def test_a_hole_is_forgotten_when_the_client_reconnects(hub_factory):
    """A client that no longer has the refused fix is not stuck: it reconnects and goes on."""
    hub = await hub_factory(history_pending_limit=100)
    stalled = StalledWriter(hub)
    ws = await technician(hub, "t-gone")
    reader = Reader(ws)
    await ws.send(batch(range(1, 101)))
    await ws.send(batch(range(1, 161)))  # 101..160 refused: the hub waits for 101
    await reader.until(lambda: reader.errors, timeout=5)
    assert (reader.errors[0]["code"], reader.errors[0]["seq"]) == ("server_busy", 101)
    stalled.release()
    await reader.until(lambda: reader.highest_ack >= 100, timeout=10)
    await ws.close()
    await asyncio.sleep(0.2)  # the hub sees the close
    again = Reader(await technician(hub, "t-gone"))
    await again.ws.send(location(500))
    await again.until(lambda: again.highest_ack >= 500, timeout=5)
    assert again.errors == []
