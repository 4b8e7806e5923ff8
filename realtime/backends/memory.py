"""In-process parts: the embedded backend's bus (a dict of channels to subscriber
callbacks), and additive counters in a dict for one process (``MemoryCounters``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from realtime.backends.base import BusMessage, Resync, Subscriber, Unsubscribe


class MemoryBus:
    def __init__(self) -> None:
        self._channels: defaultdict[str, dict[int, Subscriber]] = defaultdict(dict)
        self._next_id = 0

    async def connect(self) -> None:
        return None

    async def disconnect(self) -> None:
        self._channels.clear()

    def subscribe(self, channel: str, subscriber: Subscriber) -> Unsubscribe:
        self._next_id += 1
        token = self._next_id
        self._channels[channel][token] = subscriber

        def unsubscribe() -> None:
            subscribers = self._channels.get(channel)
            if subscribers is not None:
                subscribers.pop(token, None)
                if not subscribers:
                    del self._channels[channel]

        return unsubscribe

    async def publish(self, channel: str, message: BusMessage) -> None:
        # Subscribers only enqueue into bounded outboxes, so this loop never awaits; copy
        # first because a subscriber may unsubscribe (close) while we iterate.
        for subscriber in list(self._channels.get(channel, {}).values()):
            subscriber(message)

    @property
    def connected(self) -> bool:
        return True

    async def wait_synced(self, timeout: float = 5.0) -> None:
        """Subscriptions take effect at once in process."""
        return None

    def on_resync(self, callback: Resync) -> None:
        """Nothing to do: an in-process bus never loses a message, so it never resyncs."""
        return None


class MemoryCounters:
    """``Store.add_counters``/``get_counters`` in one process's memory, nothing durable.

    The plain reference the SQLite and Redis counters are held to by the same contract
    tests (``tests/realtime/backends/test_counters_contract.py``), and what a tool that has
    no store can count with."""

    def __init__(self) -> None:
        self._sets: dict[tuple[str, str], dict[str, float]] = {}

    async def add_counters(self, namespace: str, key: str, deltas: Mapping[str, float]) -> None:
        # No await between reading and writing a field: concurrent adds cannot interleave.
        counters = self._sets.setdefault((namespace, key), {})
        for field, delta in deltas.items():
            counters[field] = counters.get(field, 0.0) + float(delta)

    async def get_counters(self, namespace: str, key: str) -> dict[str, float]:
        return dict(self._sets.get((namespace, key), {}))
