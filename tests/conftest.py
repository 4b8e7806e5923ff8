"""Fixtures: real hubs on ephemeral ports (uvicorn), real WebSocket and HTTP clients."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from realtime import logsafety
from realtime.app import create_app
from realtime.auth import DEFAULT_AUDIENCE, DEFAULT_ISSUER, key_id
from realtime.settings import Settings

SECRET = "test-secret-0123456789-0123456789-abcdef"
PLATFORM_KEY = "test-platform-key"


def hand_made_token(
    claims: dict[str, Any], secret: str = SECRET, *, kid: bool = True, **header: Any
) -> str:
    """A JWT signed by hand, as the hub's own would be (iss, aud, jti, iat, exp filled in
    unless given; a claim given as None is left out): for tests that spoil one thing."""
    import jwt

    now = time.time()
    full = {
        "iss": DEFAULT_ISSUER,
        "aud": DEFAULT_AUDIENCE,
        "jti": uuid.uuid4().hex,
        "iat": int(now),
        "exp": int(now) + 600,
        **claims,
    }
    headers = {"kid": key_id(secret), **header} if kid else header
    return jwt.encode(
        {k: v for k, v in full.items() if v is not None},
        secret,
        algorithm="HS256",
        headers=headers or None,
    )


class ShiftedClock:
    """Real time plus an offset a test moves forward: the hub's clock, to jump over timers
    of minutes (a visit's expected duration) without waiting for them.

    Tokens carry ``iat`` from the hub's clock and are verified against real time, so mint
    them before moving the clock.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class RunningHub:
    """A hub served by uvicorn on 127.0.0.1 in this event loop; restartable."""

    settings: Settings
    app: Any = None
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None
    port: int = 0
    # SO_SNDBUF for the listening socket, inherited by every accepted connection. Loopback
    # send buffers autotune to megabytes, which hides a client that stops reading; a small
    # one makes such a client stall the hub's writes to it after a few kilobytes.
    send_buffer_bytes: int | None = None
    clients: list[ClientConnection] = field(default_factory=list)
    clock: Callable[[], float] | None = None  # the hub's clock; real time when None
    log_level: str = "warning"  # uvicorn's; "info" prints the access and WebSocket logs

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def hub(self) -> Any:
        return self.app.state.hub

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.send_buffer_bytes is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        logsafety.install(self.settings)  # the production log redaction (realtime/cli/serve.py)
        self.app = create_app(self.settings, clock=self.clock)
        config = uvicorn.Config(
            self.app,
            log_level=self.log_level,
            ws_max_size=self.settings.hard_frame_bytes,
            timeout_graceful_shutdown=1,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        for _ in range(500):
            if self.server.started:
                return
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        raise RuntimeError("hub did not start")

    async def stop(self) -> None:
        for client in self.clients:
            with suppress(Exception):
                await client.close()
        self.clients.clear()
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
            self.server = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def connect(self, path: str, token: str | None = None, **kwargs: Any) -> ClientConnection:
        url = f"{self.ws}{path}" + (f"?token={token}" if token else "")
        client = await connect(url, **kwargs)
        self.clients.append(client)
        return client

    def client(self, token: str | None = PLATFORM_KEY) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.http, headers=headers, timeout=10)

    async def token(self, role: str, sub: str, booking: str | None = None, ttl: int = 600) -> str:
        async with self.client() as http:
            body: dict[str, Any] = {"role": role, "sub": sub, "ttl_s": ttl}
            if booking:
                body["booking"] = booking
            response = await http.post("/v1/tokens", json=body)
            response.raise_for_status()
            return response.json()["token"]

    async def create_booking(self, **body: Any) -> dict[str, Any]:
        body.setdefault("customer_id", "cust-1")
        body.setdefault("destination", {"lat": 52.52, "lon": 13.405})
        async with self.client() as http:
            response = await http.post("/v1/bookings", json=body)
            assert response.status_code == 201, response.text
            return response.json()

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        async with self.client() as http:
            return await http.post(path, json=body or {})


@contextlib.asynccontextmanager
async def local_server(app: Any) -> AsyncIterator[int]:
    """Serve an ASGI app (a stand-in for an outside service) on 127.0.0.1; yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "local server did not start"
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


# DOORSTEP_TEST_BACKEND=redis runs every hub of the suite on the Redis backend (Redis at
# DOORSTEP_TEST_REDIS_URL) instead of the embedded one.
TEST_BACKEND = os.environ.get("DOORSTEP_TEST_BACKEND", "embedded")
TEST_REDIS_URL = os.environ.get("DOORSTEP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_TEST_RUN = uuid.uuid4().hex[:8]
_redis_prefixes: set[str] = set()


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "secret": SECRET,
        "platform_key": PLATFORM_KEY,
        "fleet_interval_s": 0.2,
    }
    if TEST_BACKEND == "redis":
        # One key prefix per data dir: a restarted hub finds its data again, as with the
        # SQLite file in that dir, and no two tests share any. Deleted at the end of the run.
        digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
        prefix = f"doorstep-test-{_TEST_RUN}-{digest}"
        _redis_prefixes.add(prefix)
        values |= {"backend": "redis", "redis_url": TEST_REDIS_URL, "redis_prefix": prefix}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session", autouse=True)
def _delete_test_redis_keys() -> Iterator[None]:
    yield
    if _redis_prefixes:
        from realtime.backends.redis import delete_all

        async def delete() -> None:
            for prefix in _redis_prefixes:
                await delete_all(TEST_REDIS_URL, prefix)

        asyncio.run(delete())


@pytest.fixture
async def hub_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    hubs: list[RunningHub] = []

    async def factory(**overrides: Any) -> RunningHub:
        data_dir = overrides.pop("data_dir", tmp_path / f"hub{len(hubs)}")
        send_buffer_bytes = overrides.pop("send_buffer_bytes", None)
        clock = overrides.pop("clock", None)
        log_level = overrides.pop("log_level", "warning")
        running = RunningHub(
            make_settings(data_dir, **overrides),
            send_buffer_bytes=send_buffer_bytes,
            clock=clock,
            log_level=log_level,
        )
        await running.start()
        hubs.append(running)
        return running

    yield factory
    for running in hubs:
        await running.stop()


@pytest.fixture
async def hub(hub_factory: Callable[..., Any]) -> RunningHub:
    return await hub_factory()


async def receive_json(client: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(client.recv(), timeout))


async def receive_until(
    client: ClientConnection, kind: str, timeout: float = 5.0
) -> dict[str, Any]:
    """The next message of this type, skipping others."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError(f"no {kind} message within {timeout} s")
        message = await receive_json(client, remaining)
        if message["type"] == kind:
            return message
