"""The three sockets served straight from their routes, ahead of Starlette's stack.

Why: a socket lives for hours and sends a frame per fix, and everything between uvicorn and
its endpoint stays alive with it and runs on every frame. Starlette's stack (error and
exception middleware, router, the route's session and exception wrappers) is about ten
coroutines per connection, each with closures, and wraps the ``send`` callable once per
layer, so every frame out passes through them; at thousands of sockets those objects are
also what the garbage collector walks (loadtest/RESULTS.md, "Garbage collection"). The
sockets need none of it: they authenticate themselves and answer with close codes, never
with HTTP error pages. The routes are still the ones in ``routes.py`` (paths are the wire
protocol), matched the same way; everything else goes to Starlette as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Match, WebSocketRoute
from starlette.types import ExceptionHandler, Lifespan, Receive, Scope, Send
from starlette.websockets import WebSocket

from realtime import logjson


class SocketsFirstApp(Starlette):
    """A Starlette app whose WebSocket routes are called directly (see the module)."""

    def __init__(
        self,
        *,
        routes: Sequence[BaseRoute],
        sockets: Sequence[WebSocketRoute],
        lifespan: Lifespan[Starlette],
        exception_handlers: Mapping[Any, ExceptionHandler],
    ) -> None:
        # The sockets stay in the routing table too: the same paths, one place to read.
        super().__init__(
            routes=[*routes, *sockets], lifespan=lifespan, exception_handlers=exception_handlers
        )
        self.sockets = tuple(sockets)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The request's or the socket's id for every log line of the task serving it.
        logjson.bind_scope(scope)
        if scope["type"] == "websocket":
            for route in self.sockets:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    scope["app"] = self
                    await route.endpoint(WebSocket(scope, receive, send))
                    return
        await super().__call__(scope, receive, send)
