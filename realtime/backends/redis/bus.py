"""The Bus protocol on Redis: pub/sub between the hubs of a deployment, a stream for each
channel that must not lose a message (see ``RedisBus``; key names in ``keys.py``, what is sent
in ``bus_wire.py``). A drop-in replacement for ``MemoryBus``, with the same contract tests.

Its three loops (reader, writer, durable reader) retry with ``loops.py`` and run under the
supervisor the hub passes in, which restarts a loop that raises and counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from tenacity import RetryCallState

from realtime.aio import stop_tasks
from realtime.backends.base import BusMessage, Resync, Subscriber, TaskSpawner, Unsubscribe
from realtime.backends.redis.bus_wire import (
    DurableSendRefused,
    encode_envelope,
    envelope_decoder,
    refused_durable,
    send_batch,
)
from realtime.backends.redis.client import (
    COMMAND_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    CONNECTION_ERRORS,
    open_client,
)
from realtime.backends.redis.keys import Keys
from realtime.backends.redis.loops import Backoff, failure_of, reconnecting

log = logging.getLogger("doorstep.redis")


class RedisBus:
    """The Bus protocol over Redis pub/sub, so that hubs sharing a Redis see each other.

    ``publish`` delivers to this bus's own subscribers at once, synchronously, exactly like
    ``MemoryBus`` (a hub's own watchers never wait for a Redis round trip, and keep working
    while Redis is away), then queues the message for Redis; the reader drops messages that
    come back from its own ``origin``, so every subscriber sees each message once.

    One pub/sub connection per bus, whatever the number of local subscribers: a channel is
    subscribed on Redis while it has at least one local subscriber. A reader task dispatches
    arriving messages to the local subscribers synchronously (they only enqueue into bounded
    outboxes), a writer task sends queued publishes in pipelined batches. When Redis drops,
    both reconnect with exponential backoff and the reader resubscribes to every channel that
    still has local subscribers. Delivery between hubs is at most once, like pub/sub itself:
    what must not be lost belongs in the store (streams), not on the bus.

    Except on the ``durable_channels`` (the operators' channel: incidents and alerts): their
    messages go into a stream per channel instead of pub/sub, publishes that fail are
    retried rather than dropped, and each hub reads the stream from the last entry it saw,
    so a hub whose connection to Redis blinks still hands every incident to its consoles
    (at least once: a retried send may repeat one, and consoles key them by id).
    """

    # Publishes waiting for Redis. Bounded because a Redis outage must not grow the hub's
    # memory: past it the oldest are dropped (live positions are worthless once stale, and a
    # watcher recovers from the snapshot on reconnect), counted in ``dropped``.
    MAX_PENDING = 10_000
    # Reconnect backoff: first retry soon (a Redis restart takes ~1 s), then doubling, with
    # jitter so several hubs do not reconnect in lockstep.
    BACKOFF_MIN_S = 0.05
    BACKOFF_MAX_S = 5.0
    # The pub/sub connection pings when idle for this long, and is declared dead (then
    # reconnected) after three times as long without hearing anything: a silently dropped TCP
    # connection would otherwise leave the hub deaf until the kernel gives up, minutes later.
    PING_INTERVAL_S = 5.0
    # Durable channel streams keep about this many entries (XADD MAXLEN ~): minutes of
    # operator traffic, far more than a reconnect takes.
    DURABLE_MAXLEN = 10_000
    # A hub starts reading a durable channel this far back from when it subscribed (Redis's
    # clock and the hub's may differ a little; an entry seen twice is harmless).
    DURABLE_LOOKBACK_S = 2.0

    def __init__(
        self,
        url: str,
        prefix: str,
        durable_channels: Iterable[str] = (),
        *,
        tasks: TaskSpawner,
    ) -> None:
        self.url = url
        # Runs the reader, writer and durable reader: one that raises (an OOM or READONLY
        # reply, a bug) is restarted with backoff, and the hub is not ready meanwhile. The
        # hub's supervisor, so that its restarts are counted and seen by /readyz.
        self.tasks = tasks
        self.keys = Keys(prefix)
        self.durable_channels = frozenset(durable_channels)
        self._durable_pending: deque[tuple[str, bytes]] = deque(maxlen=self.MAX_PENDING)
        self._read_from: dict[str, str] = {}  # durable stream key -> last entry id seen
        self._durable_changed = asyncio.Event()
        self._connected_at = 0.0
        self.origin = uuid.uuid4().hex
        # Shown by CLIENT LIST: which hub's bus a connection belongs to.
        self.client_name = f"{prefix}-bus-{self.origin[:12]}"
        self.dropped = 0  # publishes lost to a full queue or a failed send
        self._channels: defaultdict[str, dict[int, Subscriber]] = defaultdict(dict)
        self._next_id = 0
        self._redis: aioredis.Redis | None = None
        self._pending: deque[tuple[str, bytes]] = deque(maxlen=self.MAX_PENDING)
        self._pending_event = asyncio.Event()
        self._changed = asyncio.Event()  # the set of wanted channels changed
        self._connected = asyncio.Event()
        self._synced = asyncio.Event()  # connected and Redis confirmed every wanted channel
        self._confirmed: set[str] = set()  # Redis channel names, per the server's replies
        self._tasks: list[asyncio.Task[None]] = []
        self._last_heard = 0.0
        self._sending = False
        # Set by disconnect(). The loops check it after every wait, because a cancellation
        # alone can be lost inside redis-py on Python 3.11 (see COMMAND_TIMEOUT_S).
        self._closing = False
        self._sessions = 0
        self._resync: list[Resync] = []
        self._resync_task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self) -> None:
        self._closing = False
        self._connected_at = time.time()
        self._redis = await open_client(self.url, client_name=self.client_name)
        self._tasks = [
            self.tasks.spawn("doorstep-redis-bus-reader", self._read_forever),
            self.tasks.spawn("doorstep-redis-bus-writer", self._write_forever),
            self.tasks.spawn("doorstep-redis-durable", self._read_durable_forever),
        ]
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S * 2):
                await self._connected.wait()
        except TimeoutError:
            await self.disconnect()
            raise RedisConnectionError("could not open the Redis pub/sub connection") from None

    async def disconnect(self) -> None:
        # Best effort: what this hub published last (a final status) should still go out.
        if self._pending and self.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._drained()
        self._closing = True
        for event in (self._changed, self._pending_event, self._connected, self._durable_changed):
            event.set()  # wake every loop so it sees _closing
        # A cancellation can be lost in redis-py: cancelled again until they end.
        await stop_tasks([*self._tasks, self._resync_task])
        self._tasks = []
        self._channels.clear()
        self._connected.clear()
        self._synced.clear()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _drained(self) -> None:
        while self._pending or self._durable_pending or self._sending:
            await asyncio.sleep(0.01)

    def subscribe(self, channel: str, subscriber: Subscriber) -> Unsubscribe:
        self._next_id += 1
        token = self._next_id
        subscribers = self._channels[channel]
        subscribers[token] = subscriber
        if len(subscribers) == 1:
            if channel in self.durable_channels:
                # Read from a little before now (what the subscriber's snapshot may not have
                # contained yet: another hub's change whose notice is still on its way), but
                # not from before this bus connected: the hub's mirrors were read from the
                # store after that.
                since = max(time.time() - self.DURABLE_LOOKBACK_S, self._connected_at)
                since_ms = int(since * 1000)
                self._read_from[self.keys.durable(channel)] = f"{since_ms}-0"
                self._durable_changed.set()
            self._wanted_changed()

        def unsubscribe() -> None:
            subscribers = self._channels.get(channel)
            if subscribers is not None:
                subscribers.pop(token, None)
                if not subscribers:
                    del self._channels[channel]
                    self._read_from.pop(self.keys.durable(channel), None)
                    self._wanted_changed()

        return unsubscribe

    async def publish(self, channel: str, message: BusMessage) -> None:
        # Local subscribers first, synchronously, as MemoryBus does; copy because a
        # subscriber may unsubscribe (close) while we iterate.
        for subscriber in list(self._channels.get(channel, {}).values()):
            subscriber(message)
        if len(self._pending) == self.MAX_PENDING:
            self.dropped += 1  # the deque drops its oldest on append
        data = encode_envelope(self.origin, message)
        if channel in self.durable_channels:
            if len(self._durable_pending) == self.MAX_PENDING:
                self.dropped += 1
            self._durable_pending.append((self.keys.durable(channel), data))
        else:
            self._pending.append((self.keys.channel(channel), data))
        self._pending_event.set()

    def on_resync(self, callback: Resync) -> None:
        self._resync.append(callback)

    async def _run_resync(self) -> None:
        """After a reconnect: once every channel is subscribed again, let the hub re-read
        what it mirrors (anything published while we were away is lost to pub/sub)."""
        try:
            await self.wait_synced(timeout=COMMAND_TIMEOUT_S * 2)
        except TimeoutError:
            return  # the session failed again; the next one resyncs
        for callback in self._resync:
            try:
                await callback()
            except Exception:
                log.exception("resync after a Redis reconnect failed")

    async def wait_synced(self, timeout: float = 5.0) -> None:
        """Wait until Redis confirmed a subscription to every channel with local subscribers.

        Not part of the Bus protocol: subscribing is synchronous locally but reaches Redis a
        round trip later, and tests (or a hub that must not miss a message from another hub)
        wait here before relying on it.
        """
        async with asyncio.timeout(timeout):
            await self._synced.wait()

    def _wanted_changed(self) -> None:
        self._synced.clear()
        self._changed.set()

    def _wanted(self) -> set[str]:
        return {self.keys.channel(c) for c in self._channels}

    def _check_synced(self) -> None:
        # Called on every subscribe confirmation: the sizes first, so that a hub subscribing
        # thousands of channels (one per watched booking) does not rebuild the wanted set
        # for each of them (that was 5 % of a Redis hub at saturation).
        if (
            self.connected
            and len(self._confirmed) == len(self._channels)
            and self._confirmed == self._wanted()
        ):
            self._synced.set()

    # ------------------------------------------------------------------ reader

    async def _read_forever(self) -> None:
        """Pub/sub sessions one after the other until closing: a session always ends with an
        error (the connection lost, or anything else), after which the next one starts."""
        backoff = Backoff(self.BACKOFF_MIN_S, self.BACKOFF_MAX_S)
        sessions = reconnecting(
            backoff, retry_on=(Exception,), closing=lambda: self._closing, after=_reader_failed
        )
        await sessions(self._session, backoff)

    async def _session(self, backoff: Backoff) -> None:
        """One pub/sub connection: subscribe, read until it fails; the caller reconnects."""
        if self._closing:
            return
        assert self._redis is not None
        pubsub = self._redis.pubsub()
        try:
            await pubsub.connect()
            backoff.reset()  # connected: when this session fails, it is a fresh outage
            self._confirmed = set()
            self._last_heard = time.monotonic()
            self._changed.set()  # (re)subscribe to every wanted channel
            self._connected.set()
            self._check_synced()
            self._sessions += 1
            if self._sessions > 1 and self._resync:
                self._resync_task = asyncio.create_task(self._run_resync())
            tasks = [
                asyncio.create_task(self._read(pubsub)),
                asyncio.create_task(self._control(pubsub)),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()  # raise what ended the session
            raise RedisConnectionError("pub/sub session ended")
        finally:
            self._connected.clear()
            self._synced.clear()
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _read(self, pubsub: Any) -> None:
        """The only reader of the connection; dispatches synchronously, never awaits a
        subscriber."""
        prefix_length = len(self.keys.channel(""))
        while True:
            # Blocks until Redis sends something: a message, a subscribe confirmation, a pong.
            response = await pubsub.get_message(timeout=None)
            self._last_heard = time.monotonic()
            if response is None:
                continue
            kind = response["type"]
            if kind == "message":
                self._dispatch(response["channel"].decode()[prefix_length:], response["data"])
            elif kind == "subscribe":
                self._confirmed.add(response["channel"].decode())
                self._check_synced()
            elif kind == "unsubscribe":
                self._confirmed.discard(response["channel"].decode())
                self._check_synced()

    async def _read_durable_forever(self) -> None:
        """Read the durable channels this hub has subscribers for, from where it left off."""
        backoff = Backoff(self.BACKOFF_MIN_S, self.BACKOFF_MAX_S)
        reads = reconnecting(
            backoff,
            retry_on=(*CONNECTION_ERRORS, TimeoutError),
            closing=lambda: self._closing,
            after=_durable_read_failed,
        )
        prefix_length = len(self.keys.durable(""))
        while not self._closing:
            if not self._read_from:
                self._durable_changed.clear()
                await self._durable_changed.wait()
                continue
            reply = await reads(self._read_durable)
            if reply is None:
                continue  # closing, or every durable channel unsubscribed meanwhile
            backoff.reset()
            for key, entries in reply:
                key = key.decode()
                if key not in self._read_from:
                    continue  # unsubscribed meanwhile
                for entry_id, fields in entries:
                    self._read_from[key] = entry_id.decode()
                    self._dispatch(key[prefix_length:], fields[b"m"])

    async def _read_durable(self) -> list[Any] | None:
        """One XREAD of the subscribed durable streams (blocks up to 1 s); None if there are
        none."""
        streams = dict(self._read_from)
        if not streams:
            return None
        assert self._redis is not None
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            return await self._redis.xread(streams, count=500, block=1000) or []

    def _dispatch(self, channel: str, data: bytes) -> None:
        try:
            envelope = envelope_decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("undecodable message on bus channel %s dropped", channel)
            return
        if envelope.origin == self.origin:
            return  # already delivered locally by publish()
        for subscriber in list(self._channels.get(channel, {}).values()):
            try:
                subscriber(envelope.message)
            except Exception:
                # One broken subscriber must not take the reader, and every other hub
                # subscriber with it, down.
                log.exception("bus subscriber of %s failed", channel)

    async def _control(self, pubsub: Any) -> None:
        """The only writer of the connection: (un)subscribes as local subscriber sets become
        non-empty/empty, and pings when idle."""
        requested: set[str] = set()
        while not self._closing:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancellation
            # that arrives as the event is set, and this task would outlive disconnect().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.PING_INTERVAL_S):
                    await self._changed.wait()
            self._changed.clear()
            # Read the wanted set after clearing the flag: a change made while we await the
            # commands below sets it again and is handled on the next turn.
            wanted = self._wanted()
            add, remove = wanted - requested, requested - wanted
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                if add:
                    await pubsub.subscribe(*sorted(add))
                if remove:
                    await pubsub.unsubscribe(*sorted(remove))
            requested = wanted
            if not add and not remove:
                self._check_synced()
            silent = time.monotonic() - self._last_heard
            if silent > 3 * self.PING_INTERVAL_S:
                raise RedisConnectionError(f"no reply from Redis for {silent:.0f} s")
            if silent > self.PING_INTERVAL_S:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    await pubsub.ping()

    # ------------------------------------------------------------------ writer

    async def _write_forever(self) -> None:
        """Send the queued publishes in batches; a connection error is retried here, any
        other error (OOM under ``maxmemory``, READONLY after a failover) ends the run, after
        putting the unsent durable messages back, and the supervisor restarts it."""
        backoff = Backoff(self.BACKOFF_MIN_S, self.BACKOFF_MAX_S)
        sends = reconnecting(
            backoff, retry_on=(*CONNECTION_ERRORS, TimeoutError), closing=lambda: self._closing
        )
        if self._pending or self._durable_pending:
            self._pending_event.set()  # a restarted writer resends what a failed run kept
        while not self._closing:
            await self._pending_event.wait()
            self._pending_event.clear()
            await sends(self._send_pending, backoff)

    async def _send_pending(self, backoff: Backoff) -> None:
        """Send everything queued now, once Redis is connected; raises what the send raised."""
        await self._connected.wait()
        if self._closing or not (self._pending or self._durable_pending):
            return
        # Take the whole queues before awaiting: publishes made during the send go into the
        # next batch, in order.
        batch = list(self._pending)
        self._pending.clear()
        durable = list(self._durable_pending)
        self._durable_pending.clear()
        assert self._redis is not None
        self._sending = True
        try:
            results = await send_batch(
                self._redis, batch, durable, durable_maxlen=self.DURABLE_MAXLEN
            )
        except (*CONNECTION_ERRORS, TimeoutError) as exc:
            # Live messages at most once: the batch may be partly sent, it is not resent.
            # Durable ones are resent (at least once), ahead of newer ones, after a backoff.
            self.dropped += len(batch)
            self._durable_pending.extendleft(reversed(durable))
            log.warning(
                "Redis publish of %d messages failed (%s); %d durable ones kept for retry",
                len(batch) + len(durable),
                exc,
                len(durable),
            )
            raise
        except BaseException:
            # Anything else (a cancellation mid-send, a bug): the durable batch is kept.
            self._durable_pending.extendleft(reversed(durable))
            raise
        finally:
            self._sending = False
        refused = refused_durable(results[len(batch) :], durable)
        if refused:
            # Kept, ahead of newer ones, for the restarted writer; the error ends this run,
            # so that the hub reports not ready until a send works again.
            self._durable_pending.extendleft(reversed(refused))
            error = next(r for r in results if isinstance(r, Exception))
            raise DurableSendRefused(len(refused), error)
        backoff.reset()


def _reader_failed(retry_state: RetryCallState) -> None:
    exc = failure_of(retry_state)
    if isinstance(exc, CONNECTION_ERRORS):
        log.warning("Redis pub/sub connection lost (%s); reconnecting", exc)
    else:
        log.error("Redis pub/sub reader failed; reconnecting", exc_info=exc)


def _durable_read_failed(retry_state: RetryCallState) -> None:
    log.warning("reading durable channels failed (%s); retrying", failure_of(retry_state))
