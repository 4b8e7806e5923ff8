"""The events a client hands to the app: a bounded queue for ``async for``, plus callbacks.

The queue exists from the moment the client is built, so a snapshot that arrives before the
app starts iterating is not lost. It is bounded because an app that never iterates must not
grow memory without limit: when full, the oldest event goes (counted in ``dropped``). The
clients also keep the *state* the events describe (a booking's status, the open incidents),
so dropping an old event loses history, never the current picture.

Callbacks run in the client's reader task. A slow callback would stall the socket (and the
hub closes a client that does not read with 1013), so a coroutine callback is started as its
own task instead of being awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger("doorstep.clients")

T = TypeVar("T")

# Events kept for an app that does not iterate (or is slow to): minutes of a busy console.
DEFAULT_EVENT_LIMIT = 10_000

Listener = Callable[[Any], Any]


class EventQueue(Generic[T]):
    """Single-consumer, bounded, drop-oldest; ends when the client stops (or fails)."""

    def __init__(self, limit: int = DEFAULT_EVENT_LIMIT) -> None:
        self._items: deque[T] = deque()
        self._limit = limit
        self._ready = asyncio.Event()
        self._finished = False
        self._error: BaseException | None = None
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.dropped = 0

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(event)`` for every event (a coroutine function runs as a task)."""
        self._listeners.append(callback)

    def put(self, item: T) -> None:
        if len(self._items) >= self._limit:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._ready.set()
        for callback in self._listeners:
            try:
                result = callback(item)
            except Exception:
                log.exception("event callback %r failed", callback)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._callback_done)

    def finish(self, error: BaseException | None = None) -> None:
        """No more events; iteration ends after the queued ones (raising ``error`` if any)."""
        if not self._finished:
            self._finished = True
            self._error = error
            self._ready.set()

    def reopen(self) -> None:
        """Accept events again after ``finish`` (a client started again, say with a new token)."""
        self._finished = False
        self._error = None

    async def get(self) -> T:
        """The next event; StopAsyncIteration (or the client's error) once finished."""
        while not self._items:
            if self._finished:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __aiter__(self) -> EventQueue[T]:
        return self

    async def __anext__(self) -> T:
        return await self.get()

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event callback failed", exc_info=task.exception())
