"""Every HTTP error is JSON ``{code, message}`` (issue 11, item 6), over a real hub.

An unexpected exception is a 500 ``internal_error`` with no traceback or exception text in
the body; a store that is away is a retryable 503 ``store_unavailable`` with Retry-After;
unknown routes and methods are JSON too; and a body over the 64 KB limit is refused from its
``Content-Length`` or while it streams, before the hub buffers (or waits for) the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from realtime.http.common import MAX_BODY_BYTES
from tests.conftest import PLATFORM_KEY, RunningHub, make_settings
from tests.redis_server import PrivateRedis

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    running = RunningHub(make_settings(tmp_path))
    await running.start()
    yield running
    await running.stop()


def _is_error_json(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message"} and body["code"] == code


async def test_an_unexpected_exception_is_a_json_500_without_internals(
    hub: RunningHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("SELECT data FROM bookings /var/lib/doorstep secret-xyz")

    monkeypatch.setattr(hub.hub.bookings, "get_booking", broken)
    async with hub.client() as http:
        response = await http.get("/v1/bookings/b-1")
    _is_error_json(response, 500, "internal_error")
    assert "secret-xyz" not in response.text and "Traceback" not in response.text


async def test_an_exception_outside_any_endpoint_handler_is_json_too(
    hub: RunningHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list[str]:
        raise RuntimeError("secret-xyz")

    monkeypatch.setattr(hub.hub.tasks, "down", broken)  # /readyz has no handles_errors
    async with hub.client() as http:
        response = await http.get("/readyz")
    _is_error_json(response, 500, "internal_error")
    assert "secret-xyz" not in response.text


async def test_unknown_routes_and_methods_are_json(hub: RunningHub) -> None:
    async with hub.client() as http:
        _is_error_json(await http.get("/v1/nothing-here"), 404, "not_found")
        response = await http.delete("/v1/tokens")
        _is_error_json(response, 405, "method_not_allowed")
        assert "POST" in response.headers["allow"]


async def _raw_request(hub: RunningHub, head: bytes, body: bytes) -> bytes:
    """Send a request's head and part of its body, never the rest; the hub's answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(3):  # the old hub waited for the rest of the body
            return await reader.readuntil(b"\r\n\r\n") + await reader.read(500)
    finally:
        writer.close()


def _head(extra: str) -> bytes:
    return (
        "POST /v1/tokens HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {PLATFORM_KEY}\r\n{extra}\r\n"
    ).encode()


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    hub: RunningHub,
) -> None:
    answer = await _raw_request(hub, _head("Content-Length: 10000000\r\n"), b'{"role"')
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b'"code":"frame_too_large"' in answer


async def test_a_chunked_body_over_the_limit_is_refused_while_streaming(hub: RunningHub) -> None:
    chunk = b"x" * 8192
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10))
    assert len(chunks) > MAX_BODY_BYTES  # and no last chunk: the body never ends
    answer = await _raw_request(hub, _head("Transfer-Encoding: chunked\r\n"), chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer


async def test_a_body_under_the_limit_still_works(hub: RunningHub) -> None:
    async with hub.client() as http:
        response = await http.post("/v1/tokens", json={"role": "operator", "sub": "op-1"})
        assert response.status_code == 201

        async def parts() -> AsyncIterator[bytes]:
            for part in [b'{"role": "operator",', b' "sub": "op-1"}']:
                yield part

        chunked = await http.post("/v1/tokens", content=parts())
        assert chunked.status_code == 201, chunked.text


async def test_a_store_that_is_away_is_a_retryable_503(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path / "redis")
    await redis.start()
    hub = RunningHub(
        make_settings(tmp_path / "hub", backend="redis", redis_url=redis.url, redis_prefix="errors")
    )
    await hub.start()
    try:
        token = await hub.token("operator", "op-1")
        await redis.stop()
        async with hub.client(token) as http:
            response = await http.get("/v1/bookings/not-cached")
        _is_error_json(response, 503, "store_unavailable")
        assert int(response.headers["retry-after"]) > 0
    finally:
        await hub.stop()
        await redis.stop()
