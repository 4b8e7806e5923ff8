"""What the three clients share: lifecycle, the reconnecting socket, HTTP, the event queue."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection

from clients._connection import Backoff, ReconnectingSocket
from clients._events import DEFAULT_EVENT_LIMIT, EventQueue, Listener
from clients._http import http_client
from clients.errors import DoorstepError

log = logging.getLogger("doorstep.clients")

E = TypeVar("E")

# Returns a new token (sync or async): the app's call to its backend, or to the hub's
# POST /v1/tokens/refresh with the current token.
TokenProvider = Callable[[], str | Awaitable[str]]


def websocket_base(base_url: str) -> str:
    """``http(s)://host:port/prefix`` → ``ws(s)://host:port/prefix`` (no trailing slash)."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


class BaseClient(Generic[E]):
    """Start/stop, ``async with``, ``async for event in client``, callbacks, failure.

    ``base_url`` is the hub's HTTP address; the WebSocket address is derived from it unless
    ``ws_base_url`` says otherwise (a load balancer that routes sockets elsewhere).

    ``token_provider`` (optional, sync or async, returns a token) keeps the client going past
    its token's end: it is called before every reconnect (and before the first connect when
    ``token`` is empty), and when the hub closes the socket 4401 "token expired" the client
    reconnects at once with the token it returns. Without it an expired token stops the
    client with an AuthError, as does a revoked one in any case.
    """

    _path: str  # the WebSocket path, set by each client
    _stop_on_normal_close = False

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        ws_base_url: str | None = None,
        backoff: Backoff | None = None,
        http_timeout_s: float = 10.0,
        event_limit: int = DEFAULT_EVENT_LIMIT,
        token_provider: TokenProvider | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_provider = token_provider
        self.ws_base_url = (ws_base_url or websocket_base(self.base_url)).rstrip("/")
        self._token = token
        self.http = http_client(self.base_url, token, http_timeout_s)
        self.events: EventQueue[E] = EventQueue(event_limit)
        self.socket = ReconnectingSocket(
            self.ws_base_url + self._path,
            token,
            on_open=self._opened,
            on_message=self._received,
            on_close=self._closed,
            backoff=backoff or Backoff(),
            stop_on_normal_close=self._stop_on_normal_close,
            token_source=self._provided_token if token_provider else None,
        )
        self.failure: BaseException | None = None  # why the client stopped by itself
        self._task: asyncio.Task[None] | None = None
        self._closed_for_good = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect in the background (returns at once; the socket reconnects by itself).

        Also after the client stopped by itself (an AuthError: ``set_token`` first), not
        after ``close()``.
        """
        if self._closed_for_good:
            raise RuntimeError("this client was closed; create a new one")
        if self._task is not None and not self._task.done():
            return
        self.failure = None
        self.events.reopen()
        self._task = asyncio.create_task(self.socket.run(), name=f"doorstep{self._path}")
        self._task.add_done_callback(self._stopped)

    async def close(self) -> None:
        """Close the socket and the HTTP client; iteration over events ends."""
        self._closed_for_good = True
        await self.socket.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self.http.aclose()
        self.events.finish()

    async def wait_closed(self) -> None:
        """Return when the client has stopped by itself; raise why (AuthError, ...)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)
        if self.failure is not None:
            raise self.failure

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the socket is open (mostly for scripts and tests)."""
        await asyncio.wait_for(self.socket.connected.wait(), timeout)

    @property
    def connected(self) -> bool:
        return self.socket.is_connected

    def set_token(self, token: str) -> None:
        """Use a new token from the next connection and HTTP call on (after an AuthError)."""
        self._token = token
        self.socket.set_token(token)
        self.http.headers["Authorization"] = f"Bearer {token}"

    async def _provided_token(self) -> str:
        """A new token from the provider, for the socket and the HTTP calls alike."""
        assert self.token_provider is not None
        token = self.token_provider()
        if inspect.isawaitable(token):
            token = await token  # the app's own call; the socket is down meanwhile
        if not isinstance(token, str) or not token:
            raise TypeError("the token provider must return a non-empty string")
        self.set_token(token)
        return token

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ events

    def __aiter__(self) -> EventQueue[E]:
        return self.events

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(event)`` for every event (see clients/_events.py)."""
        self.events.add_listener(callback)

    def _emit(self, event: E) -> None:
        self.events.put(event)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.failure = error
            if not isinstance(error, DoorstepError):
                log.error("client stopped by an unexpected error", exc_info=error)
        self.events.finish(error)

    # ------------------------------------------------------------------ per-client hooks

    async def _opened(self, ws: ClientConnection) -> Any:
        return None

    async def _received(self, message: Any) -> None:
        raise NotImplementedError

    def _closed(self) -> None:
        return None
