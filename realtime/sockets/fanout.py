"""Per-connection send queues: bounded, conflating, never blocking the publisher.

Each WebSocket has one ``Outbox`` and one sender task that drains it. Publishers call
``put`` which never awaits, so a watcher that stops reading only ever stalls its own sender
task (blocked in the transport's drain) and never the hub or the other watchers. This is
the bounded alternative to broadcaster's unbounded ``await queue.put``.

Two lanes:

* ``urgent`` (safety messages) is always sent first and never dropped or conflated.
* ``normal`` is FIFO; a message with a ``conflate_key`` (a position, a fleet update, an ack)
  replaces the pending message with the same key in place, so it costs one slot per key
  however fast the source is: latest per technician wins.

Messages that cannot be conflated are bounded by ``limit``; a connection that lets them pile
up past it is closed as a slow consumer (it resyncs from the snapshot on reconnect) rather
than losing one silently or growing memory without bound.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from realtime.protocol import CloseCode


@dataclass(frozen=True)
class Close:
    """Sent last: after it the sender closes the socket with this code and reason."""

    code: int
    reason: str


Frame = tuple[str, str]  # (message type, JSON text)

DropHook = Callable[[str], None]


class Outbox:
    def __init__(self, limit: int, on_drop: DropHook | None = None) -> None:
        self.limit = limit
        self._on_drop = on_drop or (lambda reason: None)
        self._urgent: deque[Frame] = deque()
        self._normal: OrderedDict[object, Frame] = OrderedDict()
        self._unconflated = 0
        self._counter = itertools.count()
        self._close: Close | None = None
        self._wakeup = asyncio.Event()
        # Done when the queue overflowed: the sender may be stuck in a write to a client that
        # does not read, so the connection must be torn down without waiting for it. A bare
        # future, not an Event with a task waiting on it: at thousands of sockets every
        # task and coroutine per socket is garbage-collector work (realtime/gc_tuning.py).
        self.abandoned: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def closing(self) -> bool:
        return self._close is not None

    def __len__(self) -> int:
        return len(self._urgent) + len(self._normal)

    def put(
        self, kind: str, text: str, *, conflate_key: object | None = None, urgent: bool = False
    ) -> None:
        """Queue a frame; never blocks. Overflow closes the connection as a slow consumer."""
        if self._close is not None:
            return
        frame = (kind, text)
        if urgent:
            self._urgent.append(frame)
        elif conflate_key is not None:
            key = ("c", conflate_key)
            if key in self._normal:
                self._on_drop("conflated")
            self._normal[key] = frame  # keeps the existing slot: replaced in place
        else:
            self._normal[("u", next(self._counter))] = frame
            self._unconflated += 1
        if self._unconflated + len(self._urgent) > self.limit:
            self._on_drop("slow_consumer")
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer: send queue full, reconnect")
            if not self.abandoned.done():
                self.abandoned.set_result(None)
        self._wakeup.set()

    def close(self, code: int, reason: str, *, discard_pending: bool = True) -> None:
        """Close after sending what is urgent (and, unless discarded, everything pending)."""
        if self._close is not None:
            return
        if discard_pending:
            self._normal.clear()
            self._unconflated = 0
        self._close = Close(code, reason)
        self._wakeup.set()

    async def get(self) -> Frame | Close:
        """The next frame to send: urgent first, then FIFO, then the Close marker."""
        while True:
            if self._urgent:
                return self._urgent.popleft()
            if self._normal:
                key, frame = self._normal.popitem(last=False)
                if key[0] == "u":
                    self._unconflated -= 1
                return frame
            if self._close is not None:
                return self._close
            self._wakeup.clear()
            await self._wakeup.wait()
