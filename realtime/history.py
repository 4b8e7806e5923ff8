"""Batched location-history writer: fixes in, durable acks out.

The hot path only appends to a list; this task writes whatever accumulated at most every
``interval`` seconds (or as soon as ``max_batch`` fixes wait) in one transaction, then reports
the highest durable seq per technician so the hub can ack. A failing write is retried with
backoff and nothing is acked until it succeeds; past ``pending_limit`` the hub refuses new
fixes with ``server_busy`` instead of buffering without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import tenacity

from realtime.backends.base import Store, StoredFix
from realtime.metrics import Metrics
from realtime.tasks import Supervisor

log = logging.getLogger("doorstep.history")

# The longest wait between two attempts to write the history while the store fails.
MAX_BACKOFF_S = 5.0

DurableHook = Callable[[dict[str, int]], Awaitable[None]]


class HistoryWriter:
    def __init__(
        self,
        store: Store,
        *,
        interval: float,
        max_batch: int,
        pending_limit: int,
        on_durable: DurableHook,
        metrics: Metrics,
        tasks: Supervisor | None = None,
    ) -> None:
        self.store = store
        self.tasks = tasks if tasks is not None else Supervisor()
        self.interval = interval
        self.max_batch = max_batch
        self.pending_limit = pending_limit
        self.on_durable = on_durable
        self.metrics = metrics
        self.healthy = True
        self._pending: list[StoredFix] = []
        self._writing: list[StoredFix] = []  # the batch being written now
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def pending_of(self, technician_id: str, t_from: float, t_to: float) -> list[StoredFix]:
        """The technician's fixes in [t_from, t_to] accepted but not written yet (the
        current batch): with the stored track, the whole of it up to this moment."""
        return [
            fix
            for fix in (*self._writing, *self._pending)
            if fix.technician_id == technician_id and t_from <= fix.t <= t_to
        ]

    def has_room(self, count: int) -> bool:
        return len(self._pending) + count <= self.pending_limit

    def submit(self, fixes: list[StoredFix]) -> None:
        self._pending.extend(fixes)
        self.metrics.history_pending.set(len(self._pending))
        if len(self._pending) >= self.max_batch:
            self._wakeup.set()

    def start(self) -> None:
        self._task = self.tasks.spawn("doorstep-history-writer", self._run)

    async def stop(self) -> None:
        """Write what is pending, then stop."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            if not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self.interval)
            self._wakeup.clear()
            if self._pending:
                if not await self._write_until_stored():
                    log.error("dropping %d unwritten fixes at shutdown", len(self._pending))
                    return
            elif self._stopping:
                return

    async def _write_until_stored(self) -> bool:
        """Write a batch; after a failure try again with backoff (``interval``, doubling up
        to MAX_BACKOFF_S) until it is written. False: it failed while the hub stops."""
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_result(lambda written: not written and not self._stopping),
            wait=tenacity.wait_exponential(multiplier=self.interval, max=MAX_BACKOFF_S),
        )
        return await retrying(self._flush)

    async def _flush(self) -> bool:
        # Take the batch before awaiting: fixes submitted during the write go to the next one.
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        self._writing = batch
        started = time.perf_counter()
        try:
            await self.store.append_fixes(batch)
        except Exception:
            log.exception("history write of %d fixes failed; will retry", len(batch))
            self._pending = batch + self._pending
            self.healthy = False
            return False
        finally:
            self._writing = []
        self.healthy = True
        self.metrics.history_write_seconds.observe(time.perf_counter() - started)
        self.metrics.history_pending.set(len(self._pending))
        durable: dict[str, int] = {}
        for fix in batch:
            if fix.seq > durable.get(fix.technician_id, -1):
                durable[fix.technician_id] = fix.seq
        await self.on_durable(durable)
        if self._pending:
            self._wakeup.set()
        return True
