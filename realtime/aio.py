"""Stopping asyncio tasks for sure: shared by the hub and its backends (no hub semantics).

On Python 3.11 a cancellation can be lost inside redis-py (its connection code catches it
around a socket read), and a task whose cancellation is lost goes on with its loop: a hub
stopping with ``task.cancel(); await task`` then waits for ever (seen after a Redis outage).
``stop_tasks`` cancels again until every task is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

# How long to wait for the tasks to end after each cancel before cancelling again.
RECANCEL_S = 0.5


async def stop_tasks(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel the tasks and wait until all have ended, cancelling again any that go on."""
    pending = {task for task in tasks if task is not None and not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)


class Afterwards:
    """Work that follows a stored change but must not hold it up (the bookkeeping after a
    check-in: the distance driven, the ETA's score): run as tasks, failures logged, the
    tasks kept referenced until done (asyncio holds only weak references)."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self._tasks: set[asyncio.Task[Any]] = set()

    def run(self, what: str, work: Any) -> None:
        task = asyncio.create_task(self._guarded(what, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, what: str, work: Any) -> None:
        try:
            await work
        except Exception:
            self.log.warning("%s failed", what, exc_info=True)

    async def drain(self) -> None:
        """Wait for what is running (tests, and a hub stopping)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
