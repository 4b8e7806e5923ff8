"""Recorded tracks for replay (GPX, GeoJSON): pure, no hub."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gpxpy
import gpxpy.gpx
import pytest

from clients.tracks import TrackError, load_track


def write_gpx(path: Path, points: list[tuple[float, float]], times: bool = True) -> Path:
    gpx = gpxpy.gpx.GPX()
    track = gpxpy.gpx.GPXTrack()
    segment = gpxpy.gpx.GPXTrackSegment()
    start = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    for i, (lat, lon) in enumerate(points):
        when = start + timedelta(seconds=2 * i) if times else None
        segment.points.append(gpxpy.gpx.GPXTrackPoint(lat, lon, time=when))
    track.segments.append(segment)
    gpx.tracks.append(track)
    path.write_text(gpx.to_xml(), encoding="utf-8")
    return path


def test_a_gpx_track_keeps_its_spacing(tmp_path: Path):
    path = write_gpx(tmp_path / "t.gpx", [(52.5, 13.4), (52.501, 13.4), (52.502, 13.4)])
    fixes = load_track(path)
    assert [f.offset_s for f in fixes] == [0.0, 2.0, 4.0]
    assert (fixes[1].lat, fixes[1].lon) == (52.501, 13.4)


def test_a_gpx_track_without_times_plays_at_one_hertz(tmp_path: Path):
    fixes = load_track(write_gpx(tmp_path / "t.gpx", [(52.5, 13.4), (52.6, 13.4)], times=False))
    assert [f.offset_s for f in fixes] == [0.0, 1.0]


def test_the_track_endpoints_geojson_replays_with_its_times_and_accuracies(tmp_path: Path):
    feature = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[13.4, 52.5], [13.41, 52.51]]},
        "properties": {"times": [1000.0, 1005.5], "accuracies": [8.0, None]},
    }
    path = tmp_path / "track.geojson"
    path.write_text(json.dumps(feature))
    fixes = load_track(path)
    assert [(f.offset_s, f.lat, f.lon, f.acc) for f in fixes] == [
        (0.0, 52.5, 13.4, 8.0),
        (5.5, 52.51, 13.41, None),
    ]


def test_geojson_with_iso_times_or_none_and_out_of_order_points(tmp_path: Path):
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[13.4, 52.5], [13.4, 52.6]]},
                "properties": {"coordTimes": ["2024-05-01T08:00:00Z", "2024-05-01T08:00:03Z"]},
            }
        ],
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(collection))
    assert [f.offset_s for f in load_track(path)] == [0.0, 3.0]
    bare = {"type": "LineString", "coordinates": [[13.4, 52.5], [13.4, 52.6], [13.4, 52.7]]}
    path.write_text(json.dumps(bare))
    assert [f.offset_s for f in load_track(path)] == [0.0, 1.0, 2.0]
    backwards = {**bare, "type": "LineString"}
    feature = {"type": "Feature", "geometry": backwards, "properties": {"times": [10, 5, 12]}}
    path.write_text(json.dumps(feature))
    assert [f.offset_s for f in load_track(path)] == [0.0, 2.0]  # the one going back is dropped


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("t.txt", "", "expected a .gpx"),
        ("t.geojson", "{not json", "t.geojson"),
        ("t.geojson", '{"type": "Polygon", "coordinates": []}', "unsupported GeoJSON"),
        ("t.geojson", '{"type": "LineString", "coordinates": [[13.4, 95.0]]}', "WGS84"),
        (
            "t.geojson",
            '{"type": "Feature", "geometry": null, "properties": {"times": []}}',
            "no track points",
        ),
        ("t.gpx", "<gpx><trk>", "not a GPX file"),
    ],
)
def test_a_track_that_cannot_be_replayed_is_a_clear_error(
    tmp_path: Path, name: str, content: str, says: str
):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TrackError, match=says):
        load_track(path)
