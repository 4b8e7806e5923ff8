"""The fix pipeline on its own, built from its parts with no Hub: the order of its steps,
what the consumers are handed, and acks only after the history write.

Real parts (a SQLite store in a temp dir, the in-process bus, the in-memory roster); the
consumers and the booking view are small stand-ins, which is the point: the pipeline and
the services depend on narrow interfaces (``realtime/ports.py``), not on the hub.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest

from realtime import protocol as wire
from realtime.backends.base import BusMessage
from realtime.backends.memory import MemoryBus
from realtime.backends.roster import MemoryRoster
from realtime.backends.sqlite import SQLiteStore
from realtime.booking import Booking, BookingEvent, Destination
from realtime.booking import apply as apply_event
from realtime.booking import create as create_booking
from realtime.fleet import Fleet
from realtime.history import HistoryWriter
from realtime.ingest import FixLimits
from realtime.metrics import Metrics
from realtime.pipeline import Acks, FixPipeline
from realtime.ports import AcceptedFixes
from realtime.protocol import ProtocolError
from realtime.publish import Publisher
from realtime.tasks import Supervisor

NOW = time.time()


@dataclass
class OneVisit:
    """A BookingView with one technician on one visit (or none)."""

    visit: Booking | None = None

    async def get_booking(self, booking_id: str) -> Booking | None:
        return self.visit if self.visit and self.visit.id == booking_id else None

    def active_bookings(self) -> list[Booking]:
        return [self.visit] if self.visit else []

    def active_bookings_of(self, technician_id: str) -> list[Booking]:
        return self.active_bookings()

    def current_visit(self, technician_id: str) -> Booking | None:
        return self.visit


@dataclass
class Recorder:
    """A FixConsumer that writes down what it saw and what had happened before it."""

    name: str
    log: list[str]
    history: HistoryWriter
    seen: list[AcceptedFixes] = field(default_factory=list)

    async def on_fixes(self, accepted: AcceptedFixes) -> None:
        self.seen.append(accepted)
        self.log.append(f"{self.name}: {self.history.pending} fixes queued")


@dataclass
class Parts:
    pipeline: FixPipeline
    history: HistoryWriter
    bus: MemoryBus
    bookings: OneVisit
    consumers: list[Recorder]
    log: list[str]
    heard: dict[str, list[BusMessage]]


def en_route_booking() -> Booking:
    booking, _ = create_booking(
        booking_id="b-1",
        customer_id="c-1",
        destination=Destination(52.52, 13.40),
        t=NOW - 600,
        actor="test",
        technician_id="t-1",
    )
    booking, _ = apply_event(booking, BookingEvent.EN_ROUTE, t=NOW - 500, actor="test")
    return booking


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    store = SQLiteStore(tmp_path / "doorstep.sqlite3")
    bus = MemoryBus()
    await store.open()
    await bus.connect()
    tasks = Supervisor()
    metrics = Metrics()
    publisher = Publisher(bus)
    fleet = Fleet(
        hub_id="hub-test",
        store=store,
        bus=bus,
        roster=MemoryRoster(),
        clock=time.time,
        spawn=tasks.spawn,
        interval_s=60.0,
    )
    history = HistoryWriter(
        store,
        interval=0.02,
        max_batch=500,
        pending_limit=1000,
        on_durable=Acks(fleet, publisher).on_durable,
        metrics=metrics,
        tasks=tasks,
    )
    log: list[str] = []
    consumers = [Recorder(name, log, history) for name in ("first", "second")]
    bookings = OneVisit(en_route_booking())
    pipeline = FixPipeline(
        fleet=fleet,
        history=history,
        publisher=publisher,
        bookings=bookings,
        limits=FixLimits(max_future_skew_s=5.0, max_fix_age_s=3600.0, max_batch_points=100),
        metrics=metrics,
        clock=time.time,
        consumers=consumers,
    )
    heard: dict[str, list[BusMessage]] = {"booking:b-1": [], "technician:t-1": []}
    for channel, messages in heard.items():

        def hear(message: BusMessage, messages: list[BusMessage] = messages) -> None:
            messages.append(message)
            log.append(f"{message.kind} published")

        bus.subscribe(channel, hear)
    await fleet.connected("t-1")
    history.start()
    try:
        yield Parts(pipeline, history, bus, bookings, consumers, log, heard)
    finally:
        await history.stop()
        await fleet.stop()
        await bus.disconnect()
        await store.close()


def fix(seq: int, t: float, lat: float = 52.50) -> wire.Location:
    return wire.Location(seq=seq, t=t, lat=lat, lon=13.40, acc=5.0, speed=9.0)


async def acked(parts: Parts, seq: int) -> int:
    for _ in range(200):
        acks = [msgspec.json.decode(m.text)["seq"] for m in parts.heard["technician:t-1"]]
        if acks and acks[-1] >= seq:
            return acks[-1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no ack for seq {seq}")


async def test_a_fix_is_queued_then_published_then_handed_to_each_consumer_in_order(
    parts: Parts,
) -> None:
    await parts.pipeline.ingest("t-1", fix(1, NOW - 10), time.perf_counter())
    assert parts.log == [
        "position published",
        "first: 1 fixes queued",
        "second: 1 fixes queued",
    ]
    accepted = parts.consumers[0].seen[0]
    assert accepted.technician_id == "t-1"
    assert [f.seq for f in accepted.fixes] == [1]
    assert accepted.visit is parts.bookings.visit
    assert accepted.previous_t == float("-inf")
    assert parts.consumers[1].seen == parts.consumers[0].seen


async def test_the_ack_comes_only_after_the_history_write(parts: Parts) -> None:
    await parts.pipeline.ingest("t-1", fix(1, NOW - 10), time.perf_counter())
    assert parts.heard["technician:t-1"] == []  # queued, not yet written: no ack
    assert await acked(parts, 1) == 1
    assert "ack published" in parts.log[parts.log.index("second: 1 fixes queued") :]


async def test_a_late_batch_is_handed_on_whole_with_the_time_it_must_not_go_behind(
    parts: Parts,
) -> None:
    await parts.pipeline.ingest("t-1", fix(5, NOW - 5), time.perf_counter())
    late = wire.Batch(points=[fix(6, NOW - 30), fix(7, NOW - 20)])
    await parts.pipeline.ingest("t-1", late, time.perf_counter())
    second = parts.consumers[0].seen[1]
    assert [f.seq for f in second.fixes] == [6, 7]
    assert second.previous_t == NOW - 5
    # The watchers' position does not go back to the late fixes.
    positions = [msgspec.json.decode(m.text) for m in parts.heard["booking:b-1"]]
    assert [p["seq"] for p in positions] == [5]


async def test_without_a_current_visit_nobody_watches_but_the_consumers_still_hear(
    parts: Parts,
) -> None:
    parts.bookings.visit = None
    await parts.pipeline.ingest("t-1", fix(1, NOW - 10), time.perf_counter())
    assert parts.heard["booking:b-1"] == []
    assert parts.consumers[0].seen[0].visit is None


async def test_a_refused_fix_reaches_no_one_and_is_not_queued(parts: Parts) -> None:
    with pytest.raises(ProtocolError):
        await parts.pipeline.ingest("t-1", fix(1, NOW + 3600), time.perf_counter())
    assert parts.log == [] and parts.history.pending == 0
