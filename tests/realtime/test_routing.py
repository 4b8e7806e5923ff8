"""OsrmRouter against a real local HTTP server speaking OSRM's route format; CachedRoute."""

from __future__ import annotations

import asyncio
import socket

import pytest

from geofence.geo import destination_point, distance_m
from realtime.routing import CachedRoute, OsrmRouter

HERE = (52.5, 13.4)
DOOR = (52.52, 13.45)


async def test_asks_for_the_route_with_profile_and_lon_lat_order(osrm):
    async with OsrmRouter(osrm.url, profile="car") as router:
        assert await router.route_distance_m(*HERE, *DOOR) == 4321.5
    (request,) = osrm.seen
    assert request.method == "GET"
    assert request.path_params == {
        "profile": "car",
        "coordinates": "13.400000,52.500000;13.450000,52.520000",
    }
    assert request.query_params["overview"] == "false"


async def test_trailing_slash_in_base_url_is_harmless(osrm):
    async with OsrmRouter(osrm.url + "/") as router:
        assert await router.route_distance_m(*HERE, *DOOR) == 4321.5
    assert osrm.seen[0].path_params["profile"] == "driving"


@pytest.mark.parametrize("answer", ["slow", "error", "no_route", "malformed", "no_distance"])
async def test_any_failure_returns_none_quickly(osrm, answer):
    osrm.answer = answer
    loop = asyncio.get_running_loop()
    async with OsrmRouter(osrm.url, timeout_s=0.3) as router:
        started = loop.time()
        assert await router.route_distance_m(*HERE, *DOOR) is None
        # A functional bound (the deadline is honoured), far from any benchmark.
        assert loop.time() - started < 2.0
    assert len(osrm.seen) == 1


async def test_unreachable_server_returns_none():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now: connection refused
    async with OsrmRouter(f"http://127.0.0.1:{port}", timeout_s=0.5) as router:
        assert await router.route_distance_m(*HERE, *DOOR) is None


async def test_one_router_serves_many_calls(osrm):
    async with OsrmRouter(osrm.url) as router:
        results = await asyncio.gather(*(router.route_distance_m(*HERE, *DOOR) for _ in range(5)))
    assert results == [4321.5] * 5
    assert len(osrm.seen) == 5


# --- CachedRoute (pure) ---


def test_cached_route_is_empty_until_the_first_answer():
    cache = CachedRoute(*DOOR)
    assert cache.distance_m(*HERE) is None
    assert cache.needs_refresh(0.0, *HERE)


def test_cached_route_scales_with_the_straight_line():
    cache = CachedRoute(*DOOR)
    straight = distance_m(*HERE, *DOOR)
    cache.store(100.0, *HERE, 1.4 * straight)
    assert cache.distance_m(*HERE) == pytest.approx(1.4 * straight)
    halfway = destination_point(*DOOR, 225, straight / 2)
    assert cache.distance_m(*halfway) == pytest.approx(0.7 * straight, rel=1e-3)
    # Right at the door the ratio is not trusted beyond the straight line itself.
    assert cache.distance_m(*DOOR) == pytest.approx(0.0, abs=1e-6)


def test_cached_route_refreshes_after_refresh_s_or_when_off_route():
    cache = CachedRoute(*DOOR, refresh_s=60.0)
    cache.store(100.0, *HERE, 5000.0)
    closer = destination_point(*HERE, 45, 500)
    assert not cache.needs_refresh(159.0, *closer)
    assert cache.needs_refresh(160.0, *closer)
    straight = distance_m(*HERE, *DOOR)
    away = destination_point(*DOOR, 225, straight * 1.4)
    assert cache.needs_refresh(110.0, *away)


def test_cached_route_never_goes_below_the_straight_line():
    cache = CachedRoute(*DOOR)
    cache.store(0.0, *HERE, 10.0)  # a nonsense answer shorter than the straight line
    assert cache.distance_m(*HERE) == pytest.approx(distance_m(*HERE, *DOOR))
