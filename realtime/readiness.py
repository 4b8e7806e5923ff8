"""Is the backend reachable? A probe for ``/readyz``.

With Redis, a hub whose Redis is away must say so: the load balancer then sends new
connections to a hub that can serve them, while this one keeps its open sockets (fixes stay
buffered on the phones, SOS is refused with a retryable error, never acknowledged unstored)
and catches up once Redis is back. The store is pinged every ``interval_s``; the bus reports
its own connection.
"""

from __future__ import annotations

import asyncio
import logging

from realtime.aio import stop_tasks
from realtime.backends.base import Bus, Store, store_error_kind
from realtime.tasks import Supervisor

log = logging.getLogger("doorstep.readiness")


class BackendHealth:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        tasks: Supervisor | None = None,
        interval_s: float = 1.0,
        timeout_s: float = 1.0,
    ):
        self.store = store
        self.tasks = tasks if tasks is not None else Supervisor()
        self.bus = bus
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.store_ok = True
        # Why the store is not ok: "store_full" or "store_unavailable" (None while ok).
        self.store_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def bus_ok(self) -> bool:
        return self.bus.connected

    @property
    def tasks_ok(self) -> bool:
        """No needed background task is down (crashed and not yet running again)."""
        return not self.tasks.down()

    @property
    def ok(self) -> bool:
        return self.store_ok and self.bus_ok and self.tasks_ok

    def start(self) -> None:
        self._task = self.tasks.spawn("doorstep-backend-probe", self._probe_forever)

    async def stop(self) -> None:
        await stop_tasks([self._task])

    async def probe(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.store.ping()
        except Exception as exc:
            full = store_error_kind(exc) == "full"
            if self.store_ok:
                what = "full" if full else "unreachable"
                log.warning("store %s (%s): reporting not ready", what, exc)
            self.store_ok = False
            self.store_error = "store_full" if full else "store_unavailable"
        else:
            if not self.store_ok:
                log.warning("store reachable again")
            self.store_ok = True
            self.store_error = None
        return self.ok

    async def _probe_forever(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(self.interval_s)
