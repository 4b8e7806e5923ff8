"""Notices between hubs: "I changed X, re-read it", so every hub's mirrors stay true.

Each hub keeps fast in-memory mirrors of what it serves from (active bookings, open incidents
and alerts, zones, profiles). The store is the truth; a hub that changes something tells the
others on the ``cluster`` bus channel which entity changed, and they re-read it from the
store. Notices carry ids, not data, so a late or reordered notice can never install an old
version: whoever handles it reads the current one.

Pub/sub may lose notices while Redis is away, so after the bus reconnects the hub re-reads
everything it mirrors (``Bus.on_resync``). With the embedded backend there is one hub and
the notices go nowhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum

import msgspec

from realtime.aio import stop_tasks
from realtime.backends.base import Bus, BusMessage, Unsubscribe
from realtime.tasks import Supervisor

log = logging.getLogger("doorstep.cluster")

CLUSTER_CHANNEL = "cluster"
# A store lock is held for one read-modify-write (a few round trips); if its hub dies holding
# it, it expires after this long.
LOCK_TTL_S = 10.0


class Entity(StrEnum):
    BOOKING = "booking"
    INCIDENT = "incident"
    ALERT = "alert"
    ZONES = "zones"
    PROFILE = "profile"
    CITY = "city"
    # A technician's remembered last position was erased (DELETE /v1/people/.../data): every
    # hub forgets its copy, not only the one that served the request.
    POSITION_ERASED = "position_erased"


class Notice(msgspec.Struct, frozen=True):
    hub: str
    entity: Entity
    id: str = ""


_notice_decoder = msgspec.json.Decoder(Notice)

Handler = Callable[[str], Awaitable[None]]


class Cluster:
    """Sends this hub's notices and applies the other hubs', one at a time, in order."""

    def __init__(
        self,
        hub_id: str,
        bus: Bus,
        handlers: dict[Entity, Handler],
        tasks: Supervisor | None = None,
    ) -> None:
        self.hub_id = hub_id
        self.tasks = tasks if tasks is not None else Supervisor()
        self.bus = bus
        self.handlers = handlers
        self._queue: asyncio.Queue[Notice] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Unsubscribe | None = None

    def start(self) -> None:
        self._unsubscribe = self.bus.subscribe(CLUSTER_CHANNEL, self._received)
        self._task = self.tasks.spawn("doorstep-cluster", self._apply_forever)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        await stop_tasks([self._task])

    async def announce(self, entity: Entity, entity_id: str = "") -> None:
        notice = Notice(hub=self.hub_id, entity=entity, id=entity_id)
        await self.bus.publish(
            CLUSTER_CHANNEL, BusMessage(kind="notice", text=msgspec.json.encode(notice).decode())
        )

    def _received(self, message: BusMessage) -> None:
        try:
            notice = _notice_decoder.decode(message.text)
        except msgspec.DecodeError:
            log.warning("undecodable cluster notice dropped")
            return
        if notice.hub != self.hub_id:  # our own changes are already in our mirrors
            self._queue.put_nowait(notice)

    async def _apply_forever(self) -> None:
        while True:
            notice = await self._queue.get()
            try:
                await self.handlers[notice.entity](notice.id)
            except Exception:
                # The store may be away: the resync after the reconnect catches it up.
                log.exception("applying %s notice %s failed", notice.entity.value, notice.id)
