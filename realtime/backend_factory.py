"""Which backends a hub runs on, from its settings: the one place that knows them all.

The backends import nothing of the hub, so what they need of it is handed to them here: the
durable channels (``realtime.channels``), the retention, and the supervisor that runs the
Redis bus's loops. Each backend is imported only when chosen, so the embedded default never
loads the Redis client.
"""

from __future__ import annotations

from realtime.backends.base import Bus, Store
from realtime.backends.roster import Roster
from realtime.channels import DURABLE_CHANNELS
from realtime.settings import Settings
from realtime.tasks import Supervisor


def create_backends(settings: Settings, tasks: Supervisor | None = None) -> tuple[Store, Bus]:
    """The store and bus for these settings.

    ``tasks`` supervises the background tasks a backend runs (the Redis bus's loops); the
    hub passes its own, so that their restarts are counted and seen by /readyz.
    """
    if settings.backend == "redis":
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
            tasks=tasks if tasks is not None else Supervisor(),
        )
        return store, bus
    from realtime.backends.memory import MemoryBus
    from realtime.backends.sqlite import SQLiteStore

    return SQLiteStore(settings.database_path), MemoryBus()


def create_roster(settings: Settings) -> Roster:
    """Who is online where, and last positions (GEO): shared on Redis, in memory otherwise."""
    if settings.backend == "redis":
        from realtime.backends.redis import RedisRoster

        return RedisRoster(settings.redis_url, settings.redis_prefix)
    from realtime.backends.roster import MemoryRoster

    return MemoryRoster()
