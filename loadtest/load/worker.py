"""One generator process: its share of technician, customer and operator sockets.

Fixes are paced by one timer for the whole process (not a sleeping task per socket):
technicians are staggered over one period by their global index, and at each tick every
technician that is due sends its pre-encoded fix stamped with the send time. Every socket
has a reader that counts what comes back: acks, ``error`` frames by code, positions with
their latency, incidents at the operators.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from loadtest.load import frames
from loadtest.load.config import Slice
from loadtest.load.setup import Credentials, booking_id, technician_id
from loadtest.load.stats import bin_index

_CONNECTING = 50  # handshakes in flight per process
_TICK_S = 0.02  # longest sleep of the pacing timer


@dataclass
class WorkerPlan:
    """What one process is given: its slice, where to connect, how fast and how long."""

    index: int
    kind: str  # "hub" | "hub-redis" | "relay"
    ws_base: str
    run_tag: str
    rate_hz: float
    seconds: float
    total_technicians: int
    part: Slice
    creds: Credentials | None
    drain_s: float = 3.0


@dataclass
class Tech:
    n: int
    offset_s: float
    prefixes: list[str]
    ws: ClientConnection | None = None
    online: bool = False
    closing: bool = False
    sent_seq: int = 0
    acked_seq: int = 0
    buffered: list[str] = field(default_factory=list)
    batched: set[int] = field(default_factory=set)


class Worker:
    def __init__(self, plan: WorkerPlan, outbox: Any) -> None:
        self.plan = plan
        self.outbox = outbox
        self.hub = plan.kind != "relay"
        period = 1 / plan.rate_hz
        count = max(1, int(plan.rate_hz * plan.seconds))
        self.techs = {
            n: Tech(
                n, n / plan.total_technicians * period, frames.fix_prefixes(n, count, plan.rate_hz)
            )
            for n in plan.part.technicians
        }
        self.start = 0.0
        self.sent: Counter[int] = Counter()
        self.acked: Counter[int] = Counter()
        self.delivered: Counter[int] = Counter()
        self.latency: defaultdict[int, list[float]] = defaultdict(list)
        self.recent: list[float] = []
        self.delivered_batched = 0
        self.errors: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.sos_sent: dict[str, float] = {}
        self.sos_acked = 0
        self.incidents: dict[int, dict[str, float]] = {j: {} for j in plan.part.operators}
        self.sockets: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.finished = False
        # Is the generator keeping up? How late fixes went out, and its own CPU.
        self.late_max_s = 0.0
        self.late_50ms = 0
        self.cpu_s = 0.0
        self.wall_s = 0.0

    # ------------------------------------------------------------ connecting

    def _url(self, role: str, n: int) -> str:
        base, tag, creds = self.plan.ws_base, self.plan.run_tag, self.plan.creds
        if not self.hub:
            return (
                f"{base}/tech/{technician_id(tag, n)}"
                if role == "technician"
                else (f"{base}/watch/{technician_id(tag, n)}")
            )
        assert creds is not None
        if role == "technician":
            return f"{base}/v1/ws/technician?token={creds.technicians[n]}"
        if role == "customer":
            return f"{base}/v1/ws/bookings/{booking_id(tag, n)}?token={creds.customers[n]}"
        return f"{base}/v1/ws/ops?token={creds.operators[n]}"

    async def _open(self, role: str, n: int) -> ClientConnection | None:
        try:
            ws = await connect(
                self._url(role, n), open_timeout=30, ping_interval=None, max_size=None
            )
        except Exception:
            self.failures[f"{role}_connect"] += 1
            return None
        self.sockets.append(ws)
        return ws

    async def connect_all(self, gate: asyncio.Semaphore) -> None:
        async def tech(t: Tech) -> None:
            async with gate:
                t.ws = await self._open("technician", t.n)
            if t.ws is not None:
                t.online = True
                self.readers.append(asyncio.create_task(self.read_technician(t, t.ws)))

        async def customer(n: int) -> None:
            async with gate:
                ws = await self._open("customer", n)
            if ws is not None:
                self.readers.append(asyncio.create_task(self.read_customer(n, ws)))

        async def operator(j: int) -> None:
            async with gate:
                ws = await self._open("operator", j)
            if ws is not None:
                self.readers.append(asyncio.create_task(self.read_operator(j, ws)))

        await asyncio.gather(
            *(tech(t) for t in self.techs.values()),
            *(customer(n) for n in self.plan.part.customers),
            *(operator(j) for j in (self.plan.part.operators if self.hub else [])),
        )

    # ------------------------------------------------------------ readers

    def _closed(self, role: str) -> None:
        if not self.finished:
            self.failures[f"{role}_closed"] += 1

    async def read_technician(self, t: Tech, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                m = frames.SEEN.decode(raw)
                if m.type == "ack" and m.seq is not None:
                    if m.seq > t.acked_seq:  # acks are conflated: count the fixes covered
                        self.acked[bin_index(time.time(), self.start)] += m.seq - t.acked_seq
                        t.acked_seq = m.seq
                elif m.type == "error":
                    self.errors[m.code or "unknown"] += 1
                elif m.type == "sos_ack":
                    self.sos_acked += 1
        except ConnectionClosed:
            pass
        if not t.closing:
            t.online = False
            self._closed("technician")

    async def read_customer(self, n: int, ws: ClientConnection) -> None:
        tech = self.techs[n]
        try:
            async for raw in ws:
                now = time.time()
                m = frames.SEEN.decode(raw)
                if m.type in ("position", "location") and m.t is not None:
                    self._delivered(tech, m.seq, m.t, now)
                elif m.type == "batch" and m.points:  # the relay forwards batches as they are
                    for point in m.points:
                        self._delivered(tech, point.seq, point.t or now, now)
        except ConnectionClosed:
            self._closed("customer")

    def _delivered(self, tech: Tech, seq: int | None, t: float, now: float) -> None:
        slot = bin_index(now, self.start)
        self.delivered[slot] += 1
        if seq in tech.batched:
            self.delivered_batched += 1  # sent late on purpose: not a latency
            return
        ms = (now - t) * 1000
        self.latency[slot].append(ms)
        self.recent.append(ms)

    async def read_operator(self, j: int, ws: ClientConnection) -> None:
        seen = self.incidents[j]
        try:
            async for raw in ws:
                now = time.time()
                if '"incident"' not in raw[:40]:
                    continue  # fleet updates, snapshots: not what is measured here
                client_id = frames.incident_client_id(frames.SEEN.decode(raw))
                if client_id is not None and client_id not in seen:
                    seen[client_id] = now
        except ConnectionClosed:
            self._closed("operator")

    # ------------------------------------------------------------ sending

    async def fire(self, t: Tech, seq: int, now: float) -> None:
        text = frames.stamp(t.prefixes[seq - 1], now)
        if not t.online or t.ws is None:
            if t.closing:  # dropped on purpose: kept for the batch after reconnecting
                t.buffered.append(text)
                t.batched.add(seq)
            return
        try:
            await t.ws.send(text)
        except ConnectionClosed:
            return
        t.sent_seq = seq
        self.sent[bin_index(now, self.start)] += 1

    async def pace(self) -> None:
        period = 1 / self.plan.rate_hz
        order = sorted(self.techs.values(), key=lambda t: t.offset_s)
        end = self.start + self.plan.seconds
        cycle, ptr = 0, 0
        while order and cycle < len(order[0].prefixes):
            now = time.time()
            if now >= end:
                break
            while cycle < len(order[0].prefixes):
                t = order[ptr]
                due = self.start + t.offset_s + cycle * period
                if due > now:
                    break
                late = now - due
                if late > self.late_max_s:
                    self.late_max_s = late
                if late > 0.05:
                    self.late_50ms += 1
                await self.fire(t, cycle + 1, now)
                ptr += 1
                if ptr == len(order):
                    ptr, cycle = 0, cycle + 1
            await asyncio.sleep(max(0.0, min(_TICK_S, due - time.time())))

    async def drop(self, t: Tech, at_s: float, length_s: float) -> None:
        """Go offline for a few seconds, reconnect, send what was buffered as one batch."""
        await asyncio.sleep(max(0.0, self.start + at_s - time.time()))
        if t.ws is None:
            return
        t.closing, t.online = True, False
        with contextlib.suppress(Exception):
            await t.ws.close()
        await asyncio.sleep(length_s)
        ws = await self._open("technician", t.n)
        if ws is None:
            return
        t.ws = ws
        self.readers.append(asyncio.create_task(self.read_technician(t, ws)))
        # Still "closing" while the batch goes: a fix due meanwhile is buffered for the next
        # batch rather than sent live ahead of older fixes (the hub wants seqs in order).
        while t.buffered:
            points, t.buffered = t.buffered, []
            try:
                await ws.send(frames.batch(points))
            except ConnectionClosed:
                return
            t.sent_seq = max(t.sent_seq, max(t.batched))
            self.sent[bin_index(time.time(), self.start)] += len(points)
        t.closing, t.online = False, True

    async def press_sos(self) -> None:
        for press in sorted(self.plan.part.sos, key=lambda p: p.at_s):
            await asyncio.sleep(max(0.0, self.start + press.at_s - time.time()))
            t = self.techs[press.technician]
            if not t.online or t.ws is None:
                continue
            lat, lon, _ = frames.start_point(t.n)
            now = time.time()
            with contextlib.suppress(ConnectionClosed):
                await t.ws.send(frames.sos(press.client_id, now, lat, lon))
                self.sos_sent[press.client_id] = now

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            recent, self.recent = self.recent, []
            self.outbox.put(("progress", self.plan.index, self.counts(), recent))

    def counts(self) -> dict[str, int]:
        return {
            "sent": sum(self.sent.values()),
            "delivered": sum(self.delivered.values()),
            "acked": sum(self.acked.values()),
            "failures": sum(self.failures.values()),
        }

    async def drain(self) -> None:
        """After the last fix: wait for acks (hub) and in-flight positions, boundedly."""
        deadline = time.time() + self.plan.drain_s
        if self.hub:
            while time.time() < deadline and any(
                t.acked_seq < t.sent_seq for t in self.techs.values() if t.online
            ):
                await asyncio.sleep(0.05)
        await asyncio.sleep(max(0.0, min(0.5, deadline - time.time())))

    def result(self) -> dict[str, Any]:
        techs = self.techs.values()
        return {
            "sent": dict(self.sent),
            "acked": dict(self.acked),
            "delivered": dict(self.delivered),
            "latency": dict(self.latency),
            "delivered_batched": self.delivered_batched,
            "errors": dict(self.errors),
            "failures": dict(self.failures),
            "technicians": len(self.techs),
            "fully_acked": sum(1 for t in techs if t.sent_seq and t.acked_seq >= t.sent_seq),
            "with_fixes": sum(1 for t in techs if t.sent_seq),
            "batched_fixes": sum(len(t.batched) for t in techs),
            "sos_sent": self.sos_sent,
            "sos_acked": self.sos_acked,
            "incidents": self.incidents,
            "sockets": len(self.sockets),
            "late_max_s": self.late_max_s,
            "late_50ms": self.late_50ms,
            "cpu_s": self.cpu_s,
            "wall_s": self.wall_s,
        }

    async def close(self) -> None:
        self.finished = True
        for t in self.techs.values():
            t.closing = True
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        for task in self.readers:
            task.cancel()


async def _run(plan: WorkerPlan, outbox: Any, go: Any, start_at: Any) -> None:
    worker = Worker(plan, outbox)
    await worker.connect_all(asyncio.Semaphore(_CONNECTING))
    outbox.put(("ready", plan.index, len(worker.sockets)))
    while not go.is_set():
        await asyncio.sleep(0.01)
    worker.start = start_at.value
    await asyncio.sleep(max(0.0, worker.start - time.time()))
    ticker = asyncio.create_task(worker.progress())
    side = [asyncio.create_task(worker.press_sos())] if plan.kind != "relay" else []
    side += [
        asyncio.create_task(worker.drop(worker.techs[n], d.at_s, d.length_s))
        for n, d in plan.part.dropouts.items()
    ]
    cpu, wall = time.process_time(), time.time()
    await worker.pace()
    worker.cpu_s, worker.wall_s = time.process_time() - cpu, time.time() - wall
    await worker.drain()
    for task in side:
        task.cancel()
    ticker.cancel()
    outbox.put(("result", plan.index, worker.result()))
    await worker.close()


def run(plan: WorkerPlan, outbox: Any, go: Any, start_at: Any) -> None:
    """The process's entry point (spawned): one event loop for the whole slice."""
    try:
        asyncio.run(_run(plan, outbox, go, start_at))
    except Exception as exc:  # reported to the driver, which fails the run with it
        outbox.put(("crashed", plan.index, repr(exc)))
