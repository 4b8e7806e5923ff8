"""`doorstep simulate` and `doorstep replay` as a developer runs them, against a real hub.

The hub runs in the test's event loop, so the commands run as asyncio subprocesses: a
blocking ``subprocess.run`` would stop the hub they talk to.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gpxpy
import gpxpy.gpx

from clients.platform import PlatformClient
from tests.conftest import PLATFORM_KEY, RunningHub

DOORSTEP = [sys.executable, "-m", "realtime.cli"]


async def doorstep(*args: str, cwd: Path, timeout: float = 60) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORSTEP_")}
    env["DOORSTEP_PLATFORM_KEY"] = PLATFORM_KEY
    process = await asyncio.create_subprocess_exec(
        *DOORSTEP,
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def track(hub: RunningHub, technician_id: str) -> dict[str, Any]:
    async with PlatformClient(hub.http, PLATFORM_KEY) as platform:
        return await platform.track(technician_id)


async def test_replay_of_a_gpx_track_stores_its_points_re_based_to_now(
    hub: RunningHub, tmp_path: Path
):
    gpx = gpxpy.gpx.GPX()
    segment = gpxpy.gpx.GPXTrackSegment()
    recorded = datetime(2023, 6, 1, 9, 30, tzinfo=UTC)  # long past: the hub would refuse it
    points = [(52.5200 + i * 0.0004, 13.4050 + i * 0.0002) for i in range(12)]
    for i, (lat, lon) in enumerate(points):
        segment.points.append(
            gpxpy.gpx.GPXTrackPoint(lat, lon, time=recorded + timedelta(seconds=5 * i))
        )
    gpx.tracks.append(gpxpy.gpx.GPXTrack())
    gpx.tracks[0].segments.append(segment)
    path = tmp_path / "morning.gpx"
    path.write_text(gpx.to_xml(), encoding="utf-8")

    started = datetime.now(UTC).timestamp()
    code, out, err = await doorstep(
        "replay", str(path), "--technician", "t-gpx", "--hub", hub.http, "--speedup", "50",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert "12 fixes sent, 12 stored" in out

    feature = await track(hub, "t-gpx")
    stored = [(lat, lon) for lon, lat in feature["geometry"]["coordinates"]]
    assert stored == [(round(lat, 7), round(lon, 7)) for lat, lon in points]
    times = feature["properties"]["times"]
    assert times[0] >= started - 1
    # 5 s apart in the file, 50x faster: 0.1 s apart now.
    assert all(abs((b - a) - 0.1) < 0.02 for a, b in itertools.pairwise(times))


async def test_replay_of_a_geojson_track_feeds_a_booking(hub: RunningHub, tmp_path: Path):
    booking = await hub.create_booking(id="b-replay", customer_id="c-replay")
    coordinates = [[round(13.4050 + i * 0.0003, 6), 52.52] for i in range(8)]  # no times: 1 Hz
    path = tmp_path / "track.geojson"
    path.write_text(
        json.dumps(
            {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coordinates}}
        )
    )
    code, _out, err = await doorstep(
        "replay", str(path), "--technician", "t-geo", "--booking", booking["id"],
        "--hub", hub.http, "--speedup", "20",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    feature = await track(hub, "t-geo")
    assert feature["geometry"]["coordinates"] == coordinates
    times = feature["properties"]["times"]
    assert all(abs((b - a) - 0.05) < 0.02 for a, b in itertools.pairwise(times))
    async with PlatformClient(hub.http, PLATFORM_KEY) as platform:
        replayed = await platform.booking("b-replay")
    assert replayed["technician_id"] == "t-geo"
    assert replayed["status"] in ("en_route", "arriving", "arrived")


async def test_replay_round_trips_the_track_endpoints_own_answer(hub: RunningHub, tmp_path: Path):
    await test_replay_of_a_gpx_track_stores_its_points_re_based_to_now(hub, tmp_path)
    exported = await track(hub, "t-gpx")
    path = tmp_path / "exported.geojson"
    path.write_text(json.dumps(exported))
    code, _, err = await doorstep(
        "replay", str(path), "--technician", "t-copy", "--hub", hub.http, "--speedup", "10",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    copy = await track(hub, "t-copy")
    assert copy["geometry"] == exported["geometry"]


async def test_replay_names_a_bad_file_and_an_unreachable_hub(hub: RunningHub, tmp_path: Path):
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "Polygon", "coordinates": []}')
    code, _, err = await doorstep("replay", str(bad), "--technician", "t-x", cwd=tmp_path)
    assert code == 1 and "unsupported GeoJSON geometry" in err
    good = tmp_path / "good.geojson"
    good.write_text('{"type": "LineString", "coordinates": [[13.4, 52.5]]}')
    code, _, err = await doorstep(
        "replay", str(good), "--technician", "t-x", "--hub", "http://127.0.0.1:9", cwd=tmp_path
    )
    assert code == 1 and "cannot reach the hub at http://127.0.0.1:9" in err


async def test_simulate_books_trips_streams_them_and_reports(hub: RunningHub, tmp_path: Path):
    code, out, err = await doorstep(
        "simulate", "--hub", hub.http, "--technicians", "2", "--speedup", "30",
        "--duration", "3", "--seed", "5",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("2 technicians, ") and "unacknowledged" not in out
    booked = err.split("doorstep: bookings ")[1].split(" are en_route")[0].split(", ")
    assert len(booked) == 2
    async with PlatformClient(hub.http, PLATFORM_KEY) as platform:
        for booking_id in booked:
            booking = await platform.booking(booking_id)
            assert booking["status"] in ("en_route", "arriving")
            feature = await track(hub, booking["technician_id"])
            assert feature["properties"]["count"] > 20


async def test_simulate_without_a_platform_key_says_where_to_find_one(tmp_path: Path):
    env_free = tmp_path / "empty"
    process = await asyncio.create_subprocess_exec(
        *DOORSTEP,
        "simulate",
        "--data-dir",
        str(env_free),
        env={k: v for k, v in os.environ.items() if not k.startswith("DOORSTEP_")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert "no platform key" in err.decode() and "secrets.json" in err.decode()
