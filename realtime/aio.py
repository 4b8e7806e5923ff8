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
