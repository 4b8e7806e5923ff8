"""The routing engine of the arrival evaluation: loadtest/osrm_sim.py over real HTTP, the
hub's routing client against it, and `doorstep eval-arrival --osrm-url`."""

from __future__ import annotations

import asyncio
import csv
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from geofence.model import Fix
from loadtest.arrival.routed import RoutedDistances
from loadtest.arrival.spec import TripSpec
from loadtest.roads import Road
from realtime.routing import OsrmRouter

DOORSTEP = [sys.executable, "-m", "realtime.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("traces")
    result = subprocess.run(
        [*DOORSTEP, "simulate-traces", "--trips", "3", "--seed", "4", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert str(out / "roads.json") in result.stdout
    return out


@pytest.fixture(scope="module")
def server(traces: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtest.osrm_sim", "--roads", str(traces / "roads.json"),
         "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/", timeout=0.5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr and process.stderr.read()
                assert time.monotonic() < deadline, "osrm_sim did not start"
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def roads(traces: Path) -> list[dict]:
    return json.loads((traces / "roads.json").read_text())


def test_the_roads_file_has_one_route_per_trip(traces: Path):
    trips = json.loads((traces / "trips.json").read_text())
    entries = roads(traces)
    assert [e["trip_id"] for e in entries] == [t["trip_id"] for t in trips]
    assert all(e["destination"] == t["destination"] for e, t in zip(entries, trips, strict=True))
    assert all(len(e["route"]) >= 3 for e in entries)


def test_the_server_answers_in_osrm_format_what_the_roads_say(traces: Path, server: str):
    entry = roads(traces)[0]
    (lat, lon), dest = entry["route"][1], entry["destination"]
    road = Road.from_latlon(dest["lat"], dest["lon"], [tuple(p) for p in entry["route"]])
    response = httpx.get(
        f"{server}/route/v1/driving/{lon:.6f},{lat:.6f};{dest['lon']:.6f},{dest['lat']:.6f}",
        params={"overview": "false"},
    )
    body = response.json()
    assert response.status_code == 200 and body["code"] == "Ok"
    assert body["routes"][0]["distance"] == pytest.approx(road.distance_m(lat, lon), abs=0.5)
    assert len(body["waypoints"]) == 2


def test_the_hub_router_reads_it_and_gets_no_route_for_an_unknown_place(traces: Path, server: str):
    entry = roads(traces)[0]
    (lat, lon), dest = entry["route"][0], entry["destination"]

    async def ask() -> tuple[float | None, float | None]:
        async with OsrmRouter(server) as router:
            known = await router.route_distance_m(lat, lon, dest["lat"], dest["lon"])
            unknown = await router.route_distance_m(lat, lon, dest["lat"] + 0.1, dest["lon"])
            return known, unknown

    known, unknown = asyncio.run(ask())
    assert known is not None and known > 1000
    assert unknown is None
    assert httpx.get(f"{server}/route/v1/driving/nonsense").status_code in (400, 404)


def test_routed_distances_follow_the_hub_cache_and_refresh(traces: Path, server: str):
    entry = roads(traces)[0]
    dest = entry["destination"]
    spec = TripSpec(entry["trip_id"], dest["lat"], dest["lon"])
    (lat0, lon0), (lat1, lon1) = entry["route"][0], entry["route"][1]
    with RoutedDistances(server, refresh_s=60.0) as routes:
        # The first fix asks and, as in the hub, goes on without the answer.
        assert routes(spec, Fix(0.0, lat0, lon0)) is None
        assert routes.calls == 1
        first = routes(spec, Fix(1.0, lat0, lon0))
        assert first is not None and first > 1000
        assert routes.calls == 1  # cached
        routes(spec, Fix(61.0, lat1, lon1))  # a minute on: asks again
        assert routes.calls == 2 and routes.failures == 0


def test_eval_arrival_scores_the_routed_eta_beside_the_others(
    traces: Path, server: str, tmp_path: Path
):
    out = tmp_path / "eval"
    result = subprocess.run(
        [*DOORSTEP, "eval-arrival", "--fixes", str(traces / "fixes.jsonl"),
         "--trips", str(traces / "trips.json"), "--out", str(out), "--osrm-url", server],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "routing requests" in result.stderr and ", 0 failed" in result.stderr
    assert "MAE ours, with routing engine" in result.stdout
    with (out / "predictions.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [
        "trip_id", "t", "eta_s", "low_s", "high_s",
        "eta_routed_s", "routed_low_s", "routed_high_s",
    ]  # fmt: skip
    assert rows[1:] and all(float(row[5]) >= 0 for row in rows[1:])
    # Each range holds its own ETA.
    assert all(float(r[3]) <= float(r[2]) <= float(r[4]) for r in rows[1:])
    assert all(float(r[6]) <= float(r[5]) <= float(r[7]) for r in rows[1:])


def test_eval_arrival_refuses_a_routing_engine_that_never_answers(traces: Path, tmp_path: Path):
    result = subprocess.run(
        [*DOORSTEP, "eval-arrival", "--fixes", str(traces / "fixes.jsonl"),
         "--trips", str(traces / "trips.json"), "--out", str(tmp_path / "eval"),
         "--osrm-url", f"http://127.0.0.1:{free_port()}", "--osrm-timeout-s", "0.2"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "never answered" in result.stderr
