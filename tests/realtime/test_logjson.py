"""Structured logs (realtime/logjson.py): JSON lines with the request or connection id,
still redacted by realtime/logsafety.py."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from realtime import logjson, logsafety
from realtime.logsafety import REDACTED
from realtime.settings import Settings, SettingsError, load_settings
from tests.conftest import RunningHub, receive_json


def record(message: str, *args: Any, exc: BaseException | None = None) -> logging.LogRecord:
    """A record made the way a logger makes one (through the record factory, so redacted)."""
    logsafety.install()  # as every server does (idempotent)
    logger = logging.getLogger("doorstep.test")
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logger.makeRecord(logger.name, logging.WARNING, "f.py", 1, message, args, exc_info)


def test_a_line_is_one_json_object_with_the_ids_in_context() -> None:
    formatter = logjson.JsonFormatter()
    plain = json.loads(formatter.format(record("store %s down", "sqlite")))
    assert plain["message"] == "store sqlite down"
    assert (plain["level"], plain["logger"]) == ("warning", "doorstep.test")
    assert "request_id" not in plain and "connection_id" not in plain
    assert isinstance(plain["t"], float)

    def inside() -> dict[str, Any]:
        logjson.request_id.set("req-1")
        return json.loads(formatter.format(record("one")))

    line = contextvars.copy_context().run(inside)
    assert line["request_id"] == "req-1"
    assert logjson.request_id.get() is None  # set in its own context only


def test_an_exception_is_one_field_and_a_message_with_newlines_stays_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError as exc:
        text = logjson.JsonFormatter().format(record("two\nlines", exc=exc))
    assert "\n" not in text
    line = json.loads(text)
    assert line["message"] == "two\nlines"
    assert line["exc"].startswith("Traceback") and "ValueError: bad" in line["exc"]


def test_a_token_in_a_message_is_redacted_in_the_json_line() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0MSJ9.c2lnbmF0dXJl"
    line = json.loads(logjson.JsonFormatter().format(record("GET /x?token=%s", jwt)))
    assert jwt not in json.dumps(line)
    assert line["message"] == f"GET /x?token={REDACTED}"


def test_a_callers_request_id_is_kept_only_when_it_is_a_plain_id() -> None:
    header = logjson.REQUEST_ID_HEADER
    assert logjson.request_id_from([(header, b"abc-123_X.y")]) == "abc-123_X.y"
    assert logjson.request_id_from([(b"X-Request-ID", b"upper")]) == "upper"
    fresh = {
        logjson.request_id_from(h)
        for h in ([], [(header, b"")], [(header, b"a b")], [(header, b"x" * 65)])
    }
    assert all(len(f) == 16 for f in fresh) and len(fresh) == 4  # four fresh ids
    jwt_like = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0In0.sig"
    assert logjson.request_id_from([(header, jwt_like)]) != jwt_like.decode()


def test_bind_scope_names_http_requests_and_sockets_but_not_the_lifespan() -> None:
    def bind(scope: dict[str, Any]) -> tuple[str | None, str | None]:
        logjson.bind_scope(scope)
        return logjson.request_id.get(), logjson.connection_id.get()

    http: dict[str, Any] = {"type": "http", "headers": [(b"x-request-id", b"r-9")]}
    assert contextvars.copy_context().run(bind, http) == ("r-9", None)
    assert http["doorstep.id"] == "r-9"
    ws: dict[str, Any] = {"type": "websocket", "headers": []}
    request, connection = contextvars.copy_context().run(bind, ws)
    assert request is None and connection is not None and len(connection) == 16
    lifespan: dict[str, Any] = {"type": "lifespan"}
    assert contextvars.copy_context().run(bind, lifespan) == (None, None)
    assert "doorstep.id" not in lifespan


@contextmanager
def json_capture(*names: str) -> Iterator[io.StringIO]:
    """JSON lines of these loggers into a buffer (uvicorn's keep their own handlers in
    text mode and do not propagate, so the capture is put on them directly)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logjson.JsonFormatter())
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield stream
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


async def test_lines_of_a_request_and_of_a_socket_carry_their_ids(hub_factory) -> None:
    hub: RunningHub = await hub_factory(log_level="info")  # uvicorn's access and socket logs
    token = await hub.token("operator", "op-1")
    with json_capture("uvicorn.access", "uvicorn.error") as stream:
        async with hub.client(None) as http:
            response = await http.get(
                f"/healthz?token={token}", headers={"X-Request-ID": "platform-42"}
            )
            assert response.status_code == 200
        ops = await hub.connect("/v1/ws/ops", token)
        assert (await receive_json(ops))["type"] == "snapshot"
        await ops.close()
        await asyncio.sleep(0.05)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert token not in stream.getvalue()
    access = [line for line in lines if "/healthz" in line["message"]]
    assert len(access) == 1
    assert access[0]["request_id"] == "platform-42"
    assert f"token={REDACTED}" in access[0]["message"]
    socket_lines = [line for line in lines if "/v1/ws/ops" in line["message"]]
    assert socket_lines, lines
    ids = {line.get("connection_id") for line in socket_lines}
    assert len(ids) == 1 and None not in ids  # every line of the socket, the same id
    assert all("request_id" not in line for line in socket_lines)


def test_install_adds_one_json_handler_to_the_root_logger() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    saved, logjson._handler = logjson._handler, None
    level = root.level
    try:
        stream = io.StringIO()
        handler = logjson.install(stream)
        assert logjson.install(io.StringIO()) is handler  # idempotent
        assert root.handlers == [*before, handler]
        logging.getLogger("doorstep.x").warning("hello %s", "there")
        assert json.loads(stream.getvalue())["message"] == "hello there"
    finally:
        root.removeHandler(logjson._handler)  # type: ignore[arg-type]
        logjson._handler = saved
        root.setLevel(level)


def test_the_log_format_setting_defaults_to_text_and_refuses_others(monkeypatch) -> None:
    assert Settings().log_format == "text"  # the README's quick start reads as before
    monkeypatch.setenv("DOORSTEP_LOG_FORMAT", "json")
    assert load_settings().log_format == "json"
    monkeypatch.setenv("DOORSTEP_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match=r"DOORSTEP_LOG_FORMAT: .*'text' or 'json'"):
        load_settings()


def test_logsafety_install_turns_json_lines_on_only_when_asked(monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(logjson, "install", lambda: calls.append("json"))
    logsafety.install(Settings(log_format="text"))
    assert calls == []
    logsafety.install(Settings(log_format="json"))
    assert calls == ["json"]
