"""Named locks inside one process: the embedded backend's side of ``Store.lock``.

With one hub there is nobody else to exclude, but the callers still need what the lock gives
them on Redis: one read-modify-write of an incident (or a watch) at a time. A lock is created
on first use and forgotten once nobody holds or waits for it, so ids do not pile up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from realtime.backends.base import LockUnavailable

# Waiting longer than this means something holds the lock across a stuck await: refuse, as
# the Redis lock does when its wait times out, rather than queue requests without bound.
WAIT_S = 10.0


class NamedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        self._users[name] = self._users.get(name, 0) + 1
        try:
            try:
                async with asyncio.timeout(WAIT_S):
                    await lock.acquire()
            except TimeoutError:
                raise LockUnavailable(f"lock {name!r} is busy") from None
            try:
                yield
            finally:
                lock.release()
        finally:
            self._users[name] -= 1
            if not self._users[name]:
                del self._users[name]
                del self._locks[name]

    def __contains__(self, name: str) -> bool:
        return name in self._locks
