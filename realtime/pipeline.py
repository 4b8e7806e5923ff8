"""The way of a fix: socket → validation and seq → history → watchers → the services.

``FixPipeline.ingest`` takes a technician's decoded ``location`` or ``batch`` from their
socket and, in this order:

1. validates it and checks its seqs (``realtime/ingest.py``, pure); a refusal raises the
   ``ProtocolError`` the socket turns into an ``error`` frame;
2. queues the accepted fixes for the durable history (``realtime/history.py``); the ``ack``
   is sent when they are written (``on_durable``), never before;
3. publishes the newest position to the watchers of the technician's current visit;
4. hands the fixes to the services that consume them (``FixConsumer``: zoning, the safety
   trail, arrivals), each given the current visit. A consumer handles its own failures
   where the fix must not fail (a zone alert that cannot be stored is logged).

It depends on the fleet state, the history, the publisher and a read-only booking view; the
consumers are given to it by the hub, so nothing here knows what they do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from realtime import protocol as wire
from realtime.fleet import Fleet
from realtime.history import HistoryWriter
from realtime.ingest import FixLimits
from realtime.metrics import Metrics
from realtime.ports import AcceptedFixes, BookingView, Clock, FixConsumer
from realtime.positions import stored_fix
from realtime.publish import Publisher

log = logging.getLogger("doorstep.pipeline")


class FixPipeline:
    def __init__(
        self,
        *,
        fleet: Fleet,
        history: HistoryWriter,
        publisher: Publisher,
        bookings: BookingView,
        limits: FixLimits,
        metrics: Metrics,
        clock: Clock,
        consumers: Sequence[FixConsumer] = (),
    ) -> None:
        self.fleet = fleet
        self.history = history
        self.publisher = publisher
        self.bookings = bookings
        self.limits = limits
        self.metrics = metrics
        self.clock = clock
        self.consumers = list(consumers)

    async def ingest(
        self, technician_id: str, message: wire.Location | wire.Batch, received: float
    ) -> None:
        """Validate, queue for the history, publish the newest position, hand on the fixes;
        or raise ProtocolError. ``received`` is ``time.perf_counter()`` at the frame's arrival.
        """
        state = self.fleet.state(technician_id)
        now = self.clock()
        # A full history queue refuses the frame ``server_busy`` naming its first fresh seq,
        # and the tracker then holds every later seq back until that one is resent: no ack
        # can cover a fix that was refused for now (docs/protocol.md, "Acks").
        room = self.history.pending_limit - self.history.pending
        fixes = state.seq.accept(message, now, self.limits, room=room)
        if not fixes:
            # A batch made only of already-stored points: re-ack so the client trims its buffer.
            await self.publisher.ack(technician_id, state.durable_seq)
            return
        self.metrics.fixes_accepted.inc(len(fixes))
        state.heard_t = now
        self.history.submit([stored_fix(technician_id, f, now) for f in fixes])
        # Only the visit in progress: a customer never sees another booking's technician,
        # nor their own before en_route (the technician may be in the previous customer's
        # home) or after check-out; the next booking's ETA and arrival wait for its en_route.
        visit = self.bookings.current_visit(technician_id)
        newest = fixes[-1]
        previous_t = state.last.t if state.last is not None else float("-inf")
        if newest.t >= previous_t:
            state.last = newest
            self.fleet.moved(technician_id)
            if visit is not None:
                await self.publisher.position(visit.id, technician_id, newest)
        self.metrics.ingest_publish_seconds.observe(time.perf_counter() - received)
        accepted = AcceptedFixes(technician_id, fixes, visit, previous_t)
        for consumer in self.consumers:
            await consumer.on_fixes(accepted)


class Acks:
    """The other end of the pipeline: the history wrote fixes up to these seqs, so they
    may be acked (``HistoryWriter``'s ``on_durable``)."""

    def __init__(self, fleet: Fleet, publisher: Publisher) -> None:
        self.fleet = fleet
        self.publisher = publisher

    async def on_durable(self, durable: dict[str, int]) -> None:
        for technician_id, seq in durable.items():
            state = self.fleet.state_if_known(technician_id)
            if state is not None and seq > state.durable_seq:
                state.durable_seq = seq
                await self.publisher.ack(technician_id, seq)
