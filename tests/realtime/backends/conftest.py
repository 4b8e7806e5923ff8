"""Backend fixtures: every Store and Bus implementation, each isolated and cleaned up.

Redis tests use the real server on 127.0.0.1:6379 (CI starts one), never a fake, each with a
random key prefix whose keys are all deleted at teardown (SCAN by prefix, never FLUSHALL:
other runs may share the server).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from realtime.backends.base import Bus, Store
from realtime.backends.memory import MemoryBus
from realtime.backends.redis import RedisBus, RedisStore, delete_all
from realtime.backends.sqlite import SQLiteStore
from realtime.tasks import Supervisor

REDIS_URL = "redis://127.0.0.1:6379/0"
# Long enough that no contract test ever sees a trim; the retention test sets its own.
TEST_RETENTION_S = 3600.0


def random_prefix() -> str:
    return f"doorstep-test-{uuid.uuid4().hex[:12]}"


def redis_bus(
    url: str, prefix: str, durable_channels: Iterable[str] = (), bus: type[RedisBus] = RedisBus
) -> RedisBus:
    """A bus as a hub builds it: its loops run under a supervisor of their own here."""
    return bus(url, prefix, durable_channels, tasks=Supervisor())


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = random_prefix()
    yield prefix
    await delete_all(REDIS_URL, prefix)


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: Store
    prefix = random_prefix()
    if request.param == "sqlite":
        backend = SQLiteStore(tmp_path / "doorstep.sqlite3")
    else:
        backend = RedisStore(REDIS_URL, prefix, history_retention_s=TEST_RETENTION_S)
    await backend.open()
    yield backend
    await backend.close()
    if request.param == "redis":
        await delete_all(REDIS_URL, prefix)


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    backend: Bus
    prefix = random_prefix()
    backend = MemoryBus() if request.param == "memory" else redis_bus(REDIS_URL, prefix)
    await backend.connect()
    yield backend
    await backend.disconnect()
    if request.param == "redis":
        await delete_all(REDIS_URL, prefix)


@pytest.fixture
async def redis_buses(redis_prefix: str) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    """Two buses on one Redis and prefix: what two hubs of one deployment have."""
    first, second = redis_bus(REDIS_URL, redis_prefix), redis_bus(REDIS_URL, redis_prefix)
    await first.connect()
    await second.connect()
    yield first, second
    await first.disconnect()
    await second.disconnect()
