"""The reconnect loop every client shares: connect, read, decide by close code, back off.

What the close code means for the client (docs/protocol.md, "Close codes"):

| close | meaning | here |
|---|---|---|
| 1000 | the watched booking is over | stop (when the socket watches a booking), else reconnect |
| 4401 "token expired" | the token's exp passed | with a token provider: reconnect at once |
| | (also on an open socket) | with a fresh token; without: as below |
| 4401, 4403 | bad or revoked token, wrong role or booking | stop, raise AuthError |
| 4404 | the booking does not exist | stop, raise NotFoundError |
| 1008 | flood: this client sent too much | reconnect, but wait at least ``flood_delay_s`` |
| 1012, 1013, 1006, ... | restart, slow consumer, dropped link | reconnect with backoff |

Backoff is "full jitter" (a uniform delay between 0 and an exponentially growing cap): after
a hub restart thousands of phones reconnect, and spreading them over the whole window is
what keeps them from arriving as one wave. The attempt count resets once a connection has
stayed up for ``stable_s``, so one drop after an hour does not inherit old penalties, while
a hub that accepts and immediately closes still sees the delays grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from clients.errors import AuthError, NotFoundError
from realtime import protocol as wire
from realtime.protocol import CloseCode

# The hub's close reason when a token's exp passed (realtime/revocation.py).
TOKEN_EXPIRED = "token expired"

log = logging.getLogger("doorstep.clients")

# Everything the hub sends, as the protocol module's own structs (tags are unique here).
Inbound = (
    wire.Ack
    | wire.Error
    | wire.Position
    | wire.Fleet
    | wire.Status
    | wire.EtaMessage
    | wire.Alert
    | wire.CheckPrompt
    | wire.CheckAck
    | wire.SosAck
    | wire.SosStatus
    | wire.IncidentMessage
    | wire.IncidentLocationMessage
    | wire.BookingMessage
    | wire.Snapshot
)
_decoder = msgspec.json.Decoder(Inbound)


def decode_message(text: str | bytes) -> Any | None:
    """A hub message as a protocol struct, or None for a type this SDK does not know.

    The protocol grows additively: new message types may appear, and clients must ignore
    them rather than fail (unknown *fields* are ignored by the structs themselves).
    """
    try:
        return _decoder.decode(text)
    except msgspec.ValidationError as exc:
        log.debug("ignoring a message this SDK does not understand: %s", exc)
    except msgspec.DecodeError as exc:
        log.warning("ignoring a frame that is not JSON: %s", exc)
    return None


class Backoff:
    """Full-jitter exponential backoff: ``uniform(0, min(cap_s, base_s * 2**attempt))``."""

    def __init__(
        self,
        base_s: float = 0.5,
        cap_s: float = 30.0,
        flood_delay_s: float = 15.0,
        rng: random.Random | None = None,
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        # After a 1008 the hub's flood window (10 s by default) must pass before this client
        # is welcome again; reconnecting sooner only earns another 1008.
        self.flood_delay_s = flood_delay_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self, *, flood: bool = False) -> float:
        ceiling = min(self.cap_s, self.base_s * 2**self.attempt)
        self.attempt += 1
        delay = self._rng.uniform(0, ceiling)
        if flood:
            delay = max(delay, self.flood_delay_s + self._rng.uniform(0, self.flood_delay_s))
        return delay

    def reset(self) -> None:
        self.attempt = 0


# One connection's life: ``on_open(ws)`` may return a coroutine that runs beside the reader
# (the technician's sender) and is cancelled when the connection ends.
OpenHandler = Callable[[ClientConnection], Awaitable[Awaitable[None] | None]]
MessageHandler = Callable[[Any], Awaitable[None]]
CloseHandler = Callable[[], None]
# Asked for a new token before a reconnect (see ReconnectingSocket.token_source).
TokenSource = Callable[[], Awaitable[str]]


class ReconnectingSocket:
    """Keeps one WebSocket to ``url`` open until told to stop or refused for good."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        on_open: OpenHandler,
        on_message: MessageHandler,
        on_close: CloseHandler,
        backoff: Backoff,
        stop_on_normal_close: bool = False,
        open_timeout_s: float = 5.0,
        ping_interval_s: float = 10.0,
        stable_s: float = 10.0,
        token_source: TokenSource | None = None,
    ) -> None:
        self.url = url
        self.token = token
        # With a token source, every connection after the first use of a token starts with
        # a fresh one, and a 4401 "token expired" is a reason to reconnect, not to stop.
        self.token_source = token_source
        self._token_used = False
        self._on_open = on_open
        self._on_message = on_message
        self._on_close = on_close
        self.backoff = backoff
        self.stop_on_normal_close = stop_on_normal_close
        self.open_timeout_s = open_timeout_s
        # Pings find a dead link (a phone in a tunnel) that TCP would take minutes to notice:
        # no pong within ping_interval_s after a ping and the connection counts as dropped.
        self.ping_interval_s = ping_interval_s
        self.stable_s = stable_s
        self.ws: ClientConnection | None = None
        self.connected = asyncio.Event()
        self.connections = 0  # successful opens so far (tests and diagnostics)
        self.last_close: tuple[int | None, str] | None = None
        # Asked before every reconnect: True when there is nothing left to connect for.
        self.finished: Callable[[], bool] = lambda: False
        self._stopping = False

    @property
    def is_connected(self) -> bool:
        return self.ws is not None and self.connected.is_set()

    async def send(self, text: str, timeout_s: float = 5.0) -> bool:
        """Send on the current connection; False if there is none or it failed."""
        ws = self.ws
        if ws is None or not self.connected.is_set():
            return False
        try:
            await asyncio.wait_for(ws.send(text), timeout_s)
        except (ConnectionClosed, TimeoutError, OSError):
            return False
        return True

    async def stop(self) -> None:
        """Close the current connection (1000) and make ``run`` return."""
        self._stopping = True
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)

    def set_token(self, token: str) -> None:
        """Use this token for the next connection (it counts as fresh: no provider call)."""
        self.token = token
        self._token_used = False

    async def _fresh_token(self) -> bool:
        """Ask the token source when the current token was used already; False if it failed."""
        if self.token_source is None or (self.token and not self._token_used):
            return True
        try:
            self.set_token(await self.token_source())
        except Exception as exc:
            # Not the message: a provider's error may quote a credential.
            log.warning("the token provider failed (%s); retrying", type(exc).__name__)
            return False
        return True

    async def run(self) -> None:
        """Connect, serve, reconnect; returns on stop or normal close, raises when refused."""
        while not self._stopping:
            if not await self._fresh_token():
                await asyncio.sleep(self.backoff.next_delay())
                continue
            self._token_used = True
            code, reason, lasted = await self._connect_once()
            if self._stopping or self.finished():
                return
            self.last_close = (code, reason)
            delay = self._decide(code, reason, lasted)
            if delay is None:
                return
            log.info("reconnecting to %s in %.2f s (close %s %s)", self._where, delay, code, reason)
            await asyncio.sleep(delay)

    def _decide(self, code: int | None, reason: str, lasted: float) -> float | None:
        """The delay before the next attempt, None to stop; raises for a final refusal."""
        if code == CloseCode.UNAUTHORIZED and reason == TOKEN_EXPIRED and self.token_source:
            # A socket that ran until its token ended: reconnect at once with a fresh one.
            # One refused at once (the provider handed out an expired token) backs off.
            return 0.0 if lasted >= 1.0 else self.backoff.next_delay()
        if code == CloseCode.UNAUTHORIZED:
            raise AuthError(reason or "token refused")
        if code == CloseCode.FORBIDDEN:
            raise AuthError(reason or "forbidden", forbidden=True)
        if code == CloseCode.NOT_FOUND:
            raise NotFoundError(reason or "not found")
        if code == CloseCode.NORMAL and self.stop_on_normal_close:
            return None
        if lasted >= self.stable_s:
            self.backoff.reset()
        if code == CloseCode.MESSAGE_TOO_BIG:
            log.error("the hub refused a frame over its hard size cap (1009): a client bug")
        return self.backoff.next_delay(flood=code == CloseCode.POLICY_FLOOD)

    async def _connect_once(self) -> tuple[int | None, str, float]:
        """One connection, start to end: (close code or None if it never opened, reason, s)."""
        try:
            ws = await connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {self.token}"},
                open_timeout=self.open_timeout_s,
                ping_interval=self.ping_interval_s,
                ping_timeout=self.ping_interval_s,
                close_timeout=2,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):  # a proxy in front may refuse with HTTP instead
                return (
                    (CloseCode.UNAUTHORIZED if status == 401 else CloseCode.FORBIDDEN),
                    (f"HTTP {status} during the handshake"),
                    0.0,
                )
            return None, f"HTTP {status} during the handshake", 0.0
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            return None, f"{type(exc).__name__}: {exc}", 0.0
        opened = time.monotonic()
        self.ws = ws
        self.connections += 1
        worker: asyncio.Task[None] | None = None
        try:
            extra = await self._on_open(ws)
            self.connected.set()
            if extra is not None:
                worker = asyncio.ensure_future(extra)
            await self._serve(ws, worker)
        finally:
            self.connected.clear()
            self.ws = None
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(BaseException):
                    await worker
            self._on_close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
        code = ws.close_code if ws.close_code is not None else 1006
        return code, ws.close_reason or "", time.monotonic() - opened

    async def _serve(self, ws: ClientConnection, worker: asyncio.Task[None] | None) -> None:
        """Read until the socket closes; a worker that fails drops the connection (1011)."""
        reader = asyncio.ensure_future(self._read(ws))
        waiting: set[asyncio.Future[None]] = {reader}
        if worker is not None:
            waiting.add(worker)
        try:
            while True:
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    return
                error = None if worker is None or worker.cancelled() else worker.exception()
                if error is not None and not isinstance(error, ConnectionClosed):
                    # A bug in the sender: start over on a fresh connection rather than keep
                    # a socket that silently stopped sending.
                    log.error("client worker failed; reconnecting", exc_info=error)
                    with contextlib.suppress(Exception):
                        await ws.close(1011, "client error")
                waiting = {reader}
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    async def _read(self, ws: ClientConnection) -> None:
        """Hand every message to ``on_message`` until the socket closes."""
        while True:
            try:
                text = await ws.recv()
            except ConnectionClosed:
                return
            message = decode_message(text)
            if message is None:
                continue
            try:
                await self._on_message(message)
            except Exception:
                # One message the client mishandles must not take the stream down with it.
                log.exception("handling a %s message failed", type(message).__name__)

    @property
    def _where(self) -> str:
        return self.url.split("?")[0]
