"""Structured logs: one JSON object per line, carrying the request or connection it is about.

Why: a log collector (Loki, Elasticsearch, CloudWatch) indexes fields, not prose, and a
hub serving thousands of sockets interleaves their lines; a ``connection_id`` on each line
of a socket's life (its upgrade, its errors, its close) and a ``request_id`` on each line
of an HTTP request (its access log, its errors) let one be followed among the others.

The ids live in context variables, set once where a request or socket enters the app
(``bind_scope``, called by ``realtime/sockets/asgi.py``); uvicorn runs each request and
each socket in a task of its own, so every line logged inside it, by the hub or by
uvicorn's access and WebSocket logs, sees its own id. Nothing is added per frame.

Secrets: records are redacted as they are created (``realtime/logsafety.py``, a record
factory) before any formatter sees them, so this formatter prints what is already clean;
``install`` is called from ``logsafety.install`` when ``DOORSTEP_LOG_FORMAT=json``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from collections.abc import MutableMapping
from typing import Any, TextIO

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "doorstep_request_id", default=None
)
connection_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "doorstep_connection_id", default=None
)

# A caller's own X-Request-ID is kept when it looks like an id (a platform correlating its
# logs with ours); anything else, or nothing, gets a fresh one. Bounded and plain, so a
# header cannot put a token, a newline or a megabyte into every line of a request.
REQUEST_ID_HEADER = b"x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A token-shaped header value is refused even though it matches _SAFE_ID (a JWT has dots).
_JWT_PREFIX = "eyJ"


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID if it is a plain id, else a fresh one."""
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            if _SAFE_ID.match(text) and not text.startswith(_JWT_PREFIX):
                return text
            break
    return new_id()


def bind_scope(scope: MutableMapping[str, Any]) -> None:
    """Give this HTTP request (``request_id``) or socket (``connection_id``) its id, for the
    task serving it; the lifespan scope gets none. Kept in the scope too (``doorstep.id``)."""
    kind = scope.get("type")
    if kind == "http":
        value = request_id_from(scope.get("headers") or [])
        request_id.set(value)
    elif kind == "websocket":
        value = new_id()
        connection_id.set(value)
    else:
        return
    scope["doorstep.id"] = value


class JsonFormatter(logging.Formatter):
    """``{"t", "level", "logger", "message", "request_id"?, "connection_id"?, "exc"?}``.

    ``t`` is Unix seconds like every time on the wire (docs/protocol.md).
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "t": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (("request_id", request_id), ("connection_id", connection_id)):
            value = var.get()
            if value is not None:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text  # redacted already when logsafety is installed
        if record.stack_info:
            line["stack"] = record.stack_info
        # default=str: a message argument of any type still yields a line, never an error.
        return json.dumps(line, ensure_ascii=False, default=str)


_handler: logging.Handler | None = None


def install(stream: TextIO | None = None, level: int = logging.INFO) -> logging.Handler:
    """Send every log record (the root logger's, uvicorn's included once its own handlers
    are off: ``doorstep serve`` passes ``log_config=None``) to ``stream`` as JSON lines.
    Idempotent: a second call returns the same handler."""
    global _handler
    if _handler is None:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        root.addHandler(handler)
        if root.level > level or root.level == logging.NOTSET:
            root.setLevel(level)
        _handler = handler
    return _handler
