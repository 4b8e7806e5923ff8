"""Fixtures for the realtime tests: a local stand-in for the OSRM routing engine, and two
hubs on one Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from realtime.backends.redis import delete_all
from tests.conftest import TEST_REDIS_URL, RunningHub, local_server

OSRM_OK = {
    "code": "Ok",
    "routes": [{"distance": 4321.5, "duration": 512.3, "weight": 512.3, "legs": []}],
    "waypoints": [{"name": "", "location": [13.4, 52.5]}, {"name": "", "location": [13.45, 52.52]}],
}


@dataclass
class FakeOsrm:
    """An OSRM look-alike on 127.0.0.1; ``answer`` picks how it replies."""

    answer: str = "ok"
    distance_m: float | None = None  # overrides OSRM_OK's route distance when set
    port: int = 0
    seen: list[Request] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def route(self, request: Request) -> Response:
        self.seen.append(request)
        if self.answer == "slow":
            await self.release.wait()  # set at teardown, so the server can shut down
        if self.answer == "error":
            return Response("internal error", status_code=500)
        if self.answer == "no_route":
            return JSONResponse({"code": "NoRoute", "message": "Impossible route"})
        if self.answer == "malformed":
            return Response('{"code": "Ok", "routes": [', media_type="application/json")
        if self.answer == "no_distance":
            return JSONResponse({"code": "Ok", "routes": [{"duration": 5.0}]})
        if self.distance_m is not None:
            route = {**OSRM_OK["routes"][0], "distance": self.distance_m}
            return JSONResponse({**OSRM_OK, "routes": [route]})
        return JSONResponse(OSRM_OK)


@pytest.fixture
async def osrm() -> AsyncIterator[FakeOsrm]:
    fake = FakeOsrm()
    app = Starlette(routes=[Route("/route/v1/{profile}/{coordinates}", fake.route)])
    async with local_server(app) as fake.port:
        yield fake
        fake.release.set()  # let hanging requests finish so the server can stop


@dataclass
class Receiver:
    """A webhook/FCM receiver on 127.0.0.1 that records requests and fails on demand.

    ``fail_next`` answers that many requests with ``fail_status`` before succeeding;
    ``always_fail`` fails every request.
    """

    port: int = 0
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 503
    always_fail: bool = False
    delay_s: float = 0.0  # answer this late: a slow endpoint (a delivery outlasting a claim)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append((request.url.path, dict(request.headers), body))
        self.arrived.set()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.always_fail or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            return Response("failing on purpose", status_code=self.fail_status)
        if "/messages:send" in request.url.path:
            return JSONResponse({"name": "projects/p/messages/1"})
        return JSONResponse({"ok": True})

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.requests) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"only {len(self.requests)} of {count} requests arrived"
            self.arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    fake = Receiver()
    app = Starlette(routes=[Route("/{path:path}", fake.handle, methods=["POST"])])
    async with local_server(app) as fake.port:
        yield fake


@pytest.fixture
async def redis_pair(hub_factory: Callable[..., Any]) -> AsyncIterator[list[RunningHub]]:
    """Two hubs in this process on one Redis key prefix: one system, two hubs."""
    prefix = f"doorstep-test-pair-{uuid.uuid4().hex[:10]}"
    redis = {"backend": "redis", "redis_url": TEST_REDIS_URL, "redis_prefix": prefix}
    hubs = [await hub_factory(**redis), await hub_factory(**redis)]
    yield hubs
    for running in hubs:
        await running.stop()
    await delete_all(TEST_REDIS_URL, prefix)
