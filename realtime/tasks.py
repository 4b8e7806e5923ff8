"""Background tasks, supervised: restarted with backoff when they raise (stopped for sure
by ``realtime.aio.stop_tasks``)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("doorstep.tasks")


# ------------------------------------------------------------------ supervision
#
# A background task that raises is restarted, with a growing delay, instead of dying for
# good (the Redis bus writer used to end on the first OOM or READONLY reply, leaving a hub
# that looked ready and never published again). While a needed task is down (from its
# failure until it has run ``settle_s`` without failing again) the hub reports not ready.


@dataclass
class TaskHealth:
    """The pure restart policy of one task: when it failed, when to retry, whether it is up.

    Time is passed in, so the policy is tested without sleeping.
    """

    backoff_min_s: float = 0.1
    backoff_max_s: float = 5.0
    settle_s: float = 1.0
    failures: int = 0  # consecutive failures, reset once a run settles
    restarts: int = 0
    failed_t: float | None = None
    started_t: float = 0.0

    def started(self, now: float) -> None:
        self.started_t = now

    def failed(self, now: float) -> float:
        """Record a failure; returns the delay before the next start (without jitter)."""
        if now - self.started_t >= self.settle_s:
            self.failures = 0  # it ran fine for a while: this is a fresh outage
        self.failures += 1
        self.restarts += 1
        self.failed_t = now
        return min(self.backoff_min_s * 2 ** (self.failures - 1), self.backoff_max_s)

    def up(self, now: float) -> bool:
        """Up unless it failed and has not run ``settle_s`` since its last restart."""
        if self.failed_t is None:
            return True
        return self.started_t > self.failed_t and now - self.started_t >= self.settle_s


class Supervisor:
    """Runs background tasks, restarting any that raises; knows which needed ones are down.

    Knows nothing of the hub: ``on_restart(name)`` is how a restart is counted (a metric),
    and backends that run tasks are handed a supervisor rather than building their own.
    """

    def __init__(
        self,
        on_restart: Callable[[str], None] | None = None,
        *,
        backoff_min_s: float = 0.1,
        backoff_max_s: float = 5.0,
        settle_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_restart = on_restart
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.settle_s = settle_s
        self.clock = clock
        self.health: dict[str, TaskHealth] = {}
        self._needed: set[str] = set()

    def spawn(
        self, name: str, factory: Callable[[], Awaitable[None]], *, needed: bool = True
    ) -> asyncio.Task[None]:
        """Start ``factory()`` as task ``name``; restarted whenever it raises.

        A run that returns ends the task (a loop that stops by itself, e.g. at shutdown).
        Cancel (``stop_tasks``) the returned task to stop it. ``needed``: the hub is not
        ready while it is down.
        """
        health = TaskHealth(self.backoff_min_s, self.backoff_max_s, self.settle_s)
        self.health[name] = health
        if needed:
            self._needed.add(name)
        return asyncio.create_task(self._run(name, factory, health), name=name)

    def down(self) -> list[str]:
        """The needed tasks that are down now, by name."""
        now = self.clock()
        return sorted(n for n in self._needed if not self.health[n].up(now))

    async def _run(
        self, name: str, factory: Callable[[], Awaitable[None]], health: TaskHealth
    ) -> None:
        while True:
            health.started(self.clock())
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = health.failed(self.clock())
                log.exception("background task %s failed; restarting in %.2f s", name, delay)
                if self.on_restart is not None:
                    try:
                        self.on_restart(name)
                    except Exception:
                        log.exception("counting the restart of %s failed", name)
            # Jitter so that several hubs hit by one outage do not retry in lockstep.
            await asyncio.sleep(delay * (0.5 + random.random()))
