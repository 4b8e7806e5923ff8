"""Backends behind the Bus and Store interfaces (``base.py``), chosen by ``DOORSTEP_BACKEND``."""

from __future__ import annotations

from realtime.backends.base import Bus, Store
from realtime.backends.roster import Roster
from realtime.channels import DURABLE_CHANNELS
from realtime.settings import Settings
from realtime.tasks import Supervisor


def create_backends(settings: Settings, tasks: Supervisor | None = None) -> tuple[Store, Bus]:
    """The store and bus for these settings: the only place that knows which ones exist.

    ``tasks`` supervises the background tasks a backend runs (the Redis bus's loops)."""
    if settings.backend == "redis":
        # Imported here so the embedded default never loads the Redis client.
        from realtime.backends.redis import RedisBus, RedisStore

        store = RedisStore(
            settings.redis_url,
            settings.redis_prefix,
            history_retention_s=settings.effective_redis_history_retention_s,
        )
        bus = RedisBus(
            settings.redis_url,
            settings.redis_prefix,
            durable_channels=DURABLE_CHANNELS,
            tasks=tasks,
        )
        return store, bus
    from realtime.backends.memory import MemoryBus
    from realtime.backends.sqlite import SQLiteStore

    return SQLiteStore(settings.database_path), MemoryBus()


def create_roster(settings: Settings) -> Roster:
    """Who is online where, and last positions (GEO): shared on Redis, in memory otherwise."""
    if settings.backend == "redis":
        from realtime.backends.redis_roster import RedisRoster

        return RedisRoster(settings.redis_url, settings.redis_prefix)
    from realtime.backends.roster import MemoryRoster

    return MemoryRoster()
