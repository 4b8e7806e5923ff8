"""In-process bus for the embedded backend: a dict of channels to subscriber callbacks."""

from __future__ import annotations

from collections import defaultdict

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
