"""No secrets in logs: tokens, the platform API key and webhook secrets are redacted from
every log record before any handler sees it.

Where they would leak: uvicorn's access log and its WebSocket upgrade log print the request
path with its query string, and browsers' sockets (and the pages' own URLs) carry
``?token=<JWT>``; an exception message or a logged header may hold ``Bearer <token>``.

How: a log record factory (``logging.setLogRecordFactory``) rewrites each record as it is
created, whatever logger made it and whichever handler, formatter or ``lastResort`` later
prints it: ``token=`` query values, ``Bearer`` credentials, anything shaped like a JWT and
every configured secret value become ``[redacted]``. Arguments are redacted one by one
(uvicorn's access formatter reads them by position), and an exception's traceback text is
rendered and redacted up front (formatters print ``exc_text`` when it is set).

``install(settings)`` is called where a server is configured: ``doorstep serve``, the demo,
and the test fixtures (so tests see exactly the production behaviour). With
``DOORSTEP_LOG_FORMAT=json`` it also sends every record to stderr as a JSON line
(``realtime/logjson.py``), redacted the same way.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any

from realtime import logjson
from realtime.settings import Settings

REDACTED = "[redacted]"
# A configured value shorter than this is not matched as a substring (it would blank out
# ordinary words); settings refuse signing keys under 32 bytes anyway.
MIN_SECRET_CHARS = 8

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # ?token=... / &token=... (also access_token=, id_token=), up to the next separator.
    # A value never takes in "%": a format string's "token=%s" is left for its argument.
    (re.compile(r"(?i)(\b[a-z_]*token=)[^&\s\"'#%]+"), rf"\1{REDACTED}"),
    # Authorization: Bearer <credential> (the platform key travels this way too).
    (re.compile(r"(?i)(\bbearer\s+)[^\s\"',;%]+"), rf"\1{REDACTED}"),
    # A JWT anywhere (header.payload.signature, the header always starts {" = eyJ).
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
]


class Redactor:
    """The rewriting rules: fixed patterns plus the configured secret values."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add_secrets(self, values: Iterable[str]) -> None:
        with self._lock:
            self._secrets |= {v for v in values if len(v) >= MIN_SECRET_CHARS}

    def text(self, text: str) -> str:
        """``text`` with every secret replaced."""
        for value in sorted(self._secrets, key=len, reverse=True):  # longest first
            if value in text:
                text = text.replace(value, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def value(self, value: Any) -> Any:
        """A log argument: strings redacted; other objects kept unless their text leaks."""
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, int | float | bool):
            return value
        text = str(value)
        clean = self.text(text)
        return value if clean == text else clean

    def record(self, record: logging.LogRecord) -> logging.LogRecord:
        """Redact a record in place: message, arguments, exception text and stack."""
        record.msg = self.value(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self.value(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: self.value(arg) for key, arg in record.args.items()}
        if record.args:
            # Pieces clean one by one may still join into a leak ("token=%s" % "opaque"):
            # then the record keeps only its redacted text.
            try:
                full = record.getMessage()
            except Exception:  # a bad format string: logging reports it at emit time
                full = None
            if full is not None and (clean := self.text(full)) != full:
                record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = self.text("".join(traceback.format_exception(*record.exc_info)))
            record.exc_text = record.exc_text.rstrip("\n")
        if record.stack_info:
            record.stack_info = self.text(record.stack_info)
        return record


class RedactingFilter(logging.Filter):
    """The same rules as a filter, for a handler of one's own (the factory already covers
    every record; this is for records built without it, e.g. ``logging.makeLogRecord``)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        self.redactor.record(record)
        return True


REDACTOR = Redactor()
_installed = False
_install_lock = threading.Lock()


def secret_values(settings: Settings) -> list[str]:
    """Every secret a settings object holds: each signing key, the platform key, the
    webhook secret, the FCM access token."""
    values: list[str] = []
    if settings.secret is not None:
        values += [key.strip() for key in settings.secret.get_secret_value().split(",")]
    for secret in (settings.platform_key, settings.webhook_secret, settings.fcm_access_token):
        if secret is not None:
            values.append(secret.get_secret_value())
    return values


def install(settings: Settings | None = None) -> Redactor:
    """Redact every log record of this process from now on; idempotent. With ``settings``,
    their secret values are redacted too (several hubs in one process: all of theirs)."""
    global _installed
    if settings is not None:
        REDACTOR.add_secrets(secret_values(settings))
    with _install_lock:
        if not _installed:
            previous = logging.getLogRecordFactory()

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                return REDACTOR.record(previous(*args, **kwargs))

            logging.setLogRecordFactory(factory)
            _installed = True
    if settings is not None and settings.log_format == "json":
        logjson.install()  # structured lines; the factory above redacts them first
    return REDACTOR
