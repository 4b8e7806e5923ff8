"""Fan-out: a watcher that stops reading never slows the hub or the other watchers.

The contract (DESIGN.md, "Performance principles"): every connection has its own bounded
outbox; positions conflate (latest per technician wins), so a stalled watcher costs one
queue slot per technician and, when it reads again, gets the newest position rather than a
backlog. Undroppable frames that pile up past the limit close the connection (1013).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from typing import Any

from websockets.asyncio.client import ClientConnection

from realtime.protocol import CloseCode
from realtime.sockets.fanout import Close, Outbox
from tests.conftest import RunningHub, receive_json, receive_until

# ------------------------------------------------------------------ helpers


def location(seq: int, t: float) -> dict[str, Any]:
    return {
        "type": "location",
        "seq": seq,
        "t": t,
        "lat": 52.5 + seq * 1e-6,
        "lon": 13.4 + seq * 1e-6,
        "acc": 5.0,
    }


def metric(text: str, name: str, labels: str = "") -> float:
    """One sample from a Prometheus text exposition (0 when absent)."""
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def stalled_watcher(hub: RunningHub, path: str, token: str) -> ClientConnection:
    """A WebSocket client that reads the first frame, then nothing: a phone in a tunnel.

    The client buffers at most one frame (``max_queue=1``), then stops reading from TCP; its
    socket's small receive buffer (set before connecting, so it is not autotuned) fills at
    once, and the hub's writes to it block. No permessage-deflate: compressed, a position is
    ~15 bytes and it takes ten times as many to fill the buffers.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", hub.port))
    return await hub.connect(path, token, sock=sock, max_queue=1, compression=None)


# ------------------------------------------------------------------ over the wire


async def test_a_stalled_watcher_gets_the_latest_position_and_slows_nobody(hub_factory):
    # A rate limit that lets one technician push thousands of frames in a few seconds, and a
    # small send buffer so the hub's writes to a client that does not read block after
    # ~10 kB of kernel buffer (loopback would otherwise absorb megabytes and hide the stall).
    rate = 1000
    hub = await hub_factory(rate_per_s=rate, rate_burst=rate, send_buffer_bytes=4096)
    await hub.create_booking(id="b1", technician_id="tech-1")
    assert (await hub.post("/v1/bookings/b1/en_route")).status_code == 200  # positions from now
    customer_token = await hub.token("customer", "cust-1", "b1")

    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "tech-1"))
    assert await receive_json(tech) == {"type": "ack", "seq": -1}
    assert (await receive_json(tech))["type"] == "booking"

    fast = await hub.connect("/v1/ws/bookings/b1", customer_token)
    assert (await receive_json(fast))["type"] == "snapshot"
    slow = await stalled_watcher(hub, "/v1/ws/bookings/b1", customer_token)
    assert (await receive_json(slow))["type"] == "snapshot"  # subscribed; from now on: silence

    frames, per_frame = 3000, 2  # 6000 fixes, one position per frame
    last_seq = frames * per_frame
    fast_seqs: list[int] = []
    fast_seen = asyncio.Condition()
    acks: list[int] = []
    tech_errors: list[dict[str, Any]] = []

    async def read_fast() -> None:
        while True:
            message = json.loads(await fast.recv())
            if message["type"] == "position":
                async with fast_seen:
                    fast_seqs.append(message["seq"])
                    fast_seen.notify_all()

    async def read_tech() -> None:
        while True:
            message = json.loads(await tech.recv())
            if message["type"] == "ack":
                acks.append(message["seq"])
            elif message["type"] == "error":
                tech_errors.append(message)

    readers = [asyncio.create_task(read_fast()), asyncio.create_task(read_tech())]
    try:
        t0 = time.time() - 60
        started = asyncio.get_running_loop().time()
        seq = 0
        for frame in range(frames):
            # Keep well inside the hub's token bucket (half the burst, then the rate).
            allowed = rate / 2 + rate * (asyncio.get_running_loop().time() - started)
            if frame > allowed:
                await asyncio.sleep((frame - allowed) / rate)
            points = []
            for _ in range(per_frame):
                seq += 1
                points.append(location(seq, t0 + seq * 0.01))
            await tech.send(json.dumps({"type": "batch", "points": points}))
            # The fast watcher gets every batch's newest fix while the slow one is stuck.
            async with fast_seen:
                await asyncio.wait_for(
                    fast_seen.wait_for(lambda newest=seq: fast_seqs[-1:] == [newest]), 5
                )
        for _ in range(200):
            if acks and acks[-1] == last_seq:
                break
            await asyncio.sleep(0.05)
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    assert tech_errors == []
    assert fast_seqs == list(range(per_frame, last_seq + 1, per_frame))
    assert acks[-1] == last_seq
    assert len(acks) > 1 and acks == sorted(acks), "acks kept coming, never backwards"

    async with hub.client() as http:
        metrics = (await http.get("/metrics")).text
    assert metric(metrics, "doorstep_queue_drops_total", '{reason="conflated"}') > 0
    assert metric(metrics, "doorstep_queue_drops_total", '{reason="slow_consumer"}') == 0

    # The stalled watcher reads again: what was already in flight, then the newest position.
    slow_seqs: list[int] = []
    while not slow_seqs or slow_seqs[-1] != last_seq:
        message = await receive_until(slow, "position", timeout=10)
        slow_seqs.append(message["seq"])
    assert slow_seqs == sorted(set(slow_seqs))
    assert len(slow_seqs) < frames / 2, (
        f"the watcher got {len(slow_seqs)} of {frames} positions: it never really stalled"
    )
    # Latest wins: no older position is still queued behind the final one (the ETA, a
    # conflated message of its own, may still follow).
    leftovers = []
    with contextlib.suppress(TimeoutError):
        while True:
            leftovers.append((await receive_json(slow, timeout=0.2))["type"])
    assert set(leftovers) <= {"eta"}, leftovers


# ------------------------------------------------------------------ Outbox, no server


async def test_conflation_keeps_one_slot_per_key_and_replaces_it_in_place():
    drops: list[str] = []
    outbox = Outbox(limit=8, on_drop=drops.append)
    outbox.put("position", "tech-1 #1", conflate_key="position:tech-1")
    outbox.put("status", "en_route")
    outbox.put("position", "tech-2 #1", conflate_key="position:tech-2")
    outbox.put("position", "tech-1 #2", conflate_key="position:tech-1")
    outbox.put("position", "tech-1 #3", conflate_key="position:tech-1")

    assert len(outbox) == 3
    # tech-1's slot kept its place in the queue (ahead of the status) with the newest value.
    assert await outbox.get() == ("position", "tech-1 #3")
    assert await outbox.get() == ("status", "en_route")
    assert await outbox.get() == ("position", "tech-2 #1")
    assert drops == ["conflated", "conflated"]

    # Once sent, the key has no slot: the next position queues again.
    outbox.put("position", "tech-1 #4", conflate_key="position:tech-1")
    assert await outbox.get() == ("position", "tech-1 #4")
    assert len(outbox) == 0


async def test_urgent_frames_go_first():
    outbox = Outbox(limit=8)
    outbox.put("position", "p", conflate_key="position:tech-1")
    outbox.put("status", "s")
    outbox.put("incident", "sos-1", urgent=True)
    outbox.put("incident", "sos-2", urgent=True)

    assert [await outbox.get() for _ in range(4)] == [
        ("incident", "sos-1"),
        ("incident", "sos-2"),
        ("position", "p"),
        ("status", "s"),
    ]


async def test_conflated_frames_never_count_against_the_limit():
    drops: list[str] = []
    outbox = Outbox(limit=8, on_drop=drops.append)
    for n in range(10_000):
        outbox.put("position", f"#{n}", conflate_key="position:tech-1")
        outbox.put("ack", f"{n}", conflate_key="ack")
    assert not outbox.closing
    assert not outbox.abandoned.done()
    assert await outbox.get() == ("position", "#9999")
    assert await outbox.get() == ("ack", "9999")
    assert "slow_consumer" not in drops


async def test_undroppable_frames_past_the_limit_close_the_connection_with_1013():
    drops: list[str] = []
    outbox = Outbox(limit=8, on_drop=drops.append)
    # The limit counts every frame that cannot be conflated, urgent ones included.
    outbox.put("incident", "sos", urgent=True)
    for n in range(7):
        outbox.put("status", f"#{n}")
        assert not outbox.closing
    outbox.put("position", "p", conflate_key="position:tech-1")  # conflatable: not counted
    assert not outbox.closing
    outbox.put("status", "one too many")

    assert outbox.closing
    assert outbox.abandoned.done()
    assert drops == ["slow_consumer"]
    # What was undroppable and urgent still goes first, then the close; the rest is dropped
    # (the client resyncs from the snapshot when it reconnects).
    assert await outbox.get() == ("incident", "sos")
    close = await outbox.get()
    assert isinstance(close, Close)
    assert close.code == CloseCode.SLOW_CONSUMER == 1013
    # After the close, nothing more is queued.
    outbox.put("status", "late")
    assert await outbox.get() == close


async def test_close_without_discarding_delivers_pending_frames_then_the_close():
    outbox = Outbox(limit=8)
    outbox.put("position", "p", conflate_key="position:tech-1")
    outbox.put("status", "cancelled")
    outbox.close(CloseCode.NORMAL, "booking is over", discard_pending=False)
    outbox.put("position", "too late", conflate_key="position:tech-1")

    assert outbox.closing
    assert not outbox.abandoned.done()
    assert await outbox.get() == ("position", "p")
    assert await outbox.get() == ("status", "cancelled")
    assert await outbox.get() == Close(1000, "booking is over")


async def test_close_discarding_pending_keeps_only_urgent_frames():
    outbox = Outbox(limit=8)
    outbox.put("status", "s")
    outbox.put("incident", "sos", urgent=True)
    outbox.close(CloseCode.POLICY_FLOOD, "flood")

    assert await outbox.get() == ("incident", "sos")
    assert await outbox.get() == Close(1008, "flood")


async def test_get_waits_for_a_frame():
    outbox = Outbox(limit=8)
    waiter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    outbox.put("status", "s")
    assert await asyncio.wait_for(waiter, 1) == ("status", "s")
