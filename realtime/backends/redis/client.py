"""Redis clients as every part of the backend opens them: timeouts, no retries, error kinds.

Uses redis-py's ``redis.asyncio`` (the old ``aioredis`` was merged into it and does not import
on Python 3.11). Importing this module tells ``store_error_kind`` (``backends/base.py``) which
redis-py errors mean "Redis is away" or "Redis is full", so the HTTP layer never imports
redis-py itself.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, OutOfMemoryError, ReadOnlyError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from realtime.backends.base import register_store_errors
from realtime.backends.redis.keys import Keys

# A command that gets no answer within this long fails instead of stalling the hub: a store
# write is retried by its caller (the history writer) or reported (an HTTP 5xx), both better
# than a request that hangs through a network partition. It is applied with asyncio.timeout
# around each call, not as redis-py's socket_timeout: that one goes through asyncio.wait_for,
# which on Python 3.11 can swallow a cancellation, and a hub task cancelled at shutdown while
# it writes would then never end.
COMMAND_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
# No automatic retries of commands: if a MULTI/EXEC's reply is lost, redis-py would send it
# again and append the audit entries twice. An error means "maybe written", as with any
# database; the callers that retry (history writer) are idempotent.
_NO_RETRY = Retry(NoBackoff(), 0)

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
# What the HTTP layer answers 503 for: Redis away, loading, read-only (a failover), or out of
# memory under ``maxmemory`` + ``noeviction`` (``store_full``).
register_store_errors(
    unavailable=(*CONNECTION_ERRORS, BusyLoadingError, ReadOnlyError),
    full=(OutOfMemoryError,),
)


def make_client(url: str, **options: Any) -> aioredis.Redis:
    """A client that never resends a command by itself (see ``_NO_RETRY``)."""
    return aioredis.Redis.from_url(
        url, retry=_NO_RETRY, socket_connect_timeout=CONNECT_TIMEOUT_S, **options
    )


async def open_client(url: str, **options: Any) -> aioredis.Redis:
    """A client that has answered a PING: a wrong URL fails at start-up, not on first use."""
    client = make_client(url, **options)
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client


P = ParamSpec("P")
R = TypeVar("R")


def bounded(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Fail a call after COMMAND_TIMEOUT_S (see there for why not socket_timeout)."""

    @functools.wraps(method)
    async def bounded(*args: P.args, **kwargs: P.kwargs) -> R:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            return await method(*args, **kwargs)

    return bounded


async def delete_all(url: str, prefix: str) -> int:
    """Delete every key of a prefix; returns how many. For tests and for retiring a deployment.

    SCAN, never FLUSHALL/FLUSHDB: other prefixes (deployments, parallel test runs) may share
    the same Redis and database.
    """
    client = make_client(url)
    deleted = 0
    try:
        for pattern in Keys(prefix).patterns:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await client.delete(*batch)
                    batch = []
            if batch:
                deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted
