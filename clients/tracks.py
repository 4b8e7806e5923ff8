"""Recorded tracks for ``doorstep replay``: GPX or GeoJSON into fixes with trip offsets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from clients.simulator import PlannedFix


class TrackError(ValueError):
    """A track file that cannot be replayed; the message says where and why."""


def load_track(path: Path) -> list[PlannedFix]:
    """Fixes from a GPX file (``gpxpy``) or a GeoJSON track, with trip offsets.

    GeoJSON: a LineString/MultiLineString/Point, bare or in a Feature or FeatureCollection,
    with its times (Unix seconds or ISO 8601) in ``properties.times`` (what
    ``GET /v1/technicians/{id}/track`` returns, with ``properties.accuracies``) or
    ``properties.coordTimes``. Without a time on every point, fixes are a steady 1 Hz.
    """
    suffix = path.suffix.lower()
    if suffix not in (".gpx", ".geojson", ".json"):
        raise TrackError(f"{path}: expected a .gpx, .geojson or .json file")
    try:
        if suffix == ".gpx":
            points = _gpx_points(path)
        else:
            points = _geojson_points(json.loads(path.read_text(encoding="utf-8")))
        if not points:
            raise TrackError("no track points")
        return fixes_from_points(points)
    except (OSError, ValueError) as exc:  # TrackError and JSON errors are ValueErrors
        raise TrackError(f"{path}: {exc}") from None


# (time or None, lat, lon, accuracy or None)
_Point = tuple[float | None, float, float, float | None]


def fixes_from_points(points: Sequence[_Point]) -> list[PlannedFix]:
    """Trip offsets from the points' own times, or 1 s apart when any time is missing.

    A point not later than the one before it is dropped: the hub wants fixes in time order.
    """
    for i, (_, lat, lon, _) in enumerate(points):
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise TrackError(f"point {i}: lat/lon {lat}, {lon} are not WGS84 degrees")
    if any(t is None for t, *_ in points):
        return [PlannedFix(float(i), lat, lon, acc) for i, (_, lat, lon, acc) in enumerate(points)]
    t0 = points[0][0]
    assert t0 is not None
    fixes: list[PlannedFix] = []
    for t, lat, lon, acc in points:
        assert t is not None
        if fixes and t - t0 <= fixes[-1].offset_s:
            continue
        fixes.append(PlannedFix(round(t - t0, 3), lat, lon, acc))
    return fixes


def _gpx_points(path: Path) -> list[_Point]:
    import gpxpy
    import gpxpy.gpx

    try:
        with path.open(encoding="utf-8") as handle:
            gpx = gpxpy.parse(handle)
    except gpxpy.gpx.GPXException as exc:
        raise TrackError(f"not a GPX file: {exc}") from None
    # Track points are what a device recorded; a route is only planned, so it is the
    # fallback for files that have nothing else.
    raw: list[Any] = [p for track in gpx.tracks for seg in track.segments for p in seg.points]
    if not raw:
        raw = [p for route in gpx.routes for p in route.points]
    return [
        (
            None if p.time is None else p.time.timestamp(),
            float(p.latitude),
            float(p.longitude),
            _gpx_accuracy(p),
        )
        for p in raw
    ]


def _gpx_accuracy(point: Any) -> float | None:
    # GPX has no accuracy, only dilution of precision; ~5 m per unit of HDOP is the usual
    # rule of thumb for a phone-grade receiver.
    hdop = getattr(point, "horizontal_dilution", None)
    return None if hdop is None else round(min(max(5.0 * float(hdop), 3.0), 1000.0), 1)


def _geojson_points(data: Any) -> list[_Point]:
    if not isinstance(data, dict):
        raise TrackError("GeoJSON must be an object")
    kind = data.get("type")
    if kind == "FeatureCollection":
        points: list[_Point] = []
        for feature in data.get("features") or []:
            points += _geojson_points(feature)
        return points
    properties: dict[str, Any] = {}
    geometry = data
    if kind == "Feature":
        properties = data.get("properties") or {}
        geometry = data.get("geometry") or {}
    gtype = geometry.get("type")
    coords = geometry.get("coordinates")
    if gtype == "Point":
        positions = [coords]
    elif gtype == "LineString":
        positions = list(coords or [])
    elif gtype == "MultiLineString":
        positions = [p for line in coords or [] for p in line]
    else:
        if kind == "Feature" and geometry == {}:
            return []  # an empty track (the track endpoint's answer when there is none)
        raise TrackError(f"unsupported GeoJSON geometry {gtype!r}: expected a LineString")
    times = _flat(properties.get("times", properties.get("coordTimes")))
    accuracies = _flat(properties.get("accuracies"))
    if times is not None and len(times) != len(positions):
        raise TrackError(f"{len(times)} times for {len(positions)} coordinates")
    points = []
    for i, position in enumerate(positions):
        if not isinstance(position, list | tuple) or len(position) < 2:
            raise TrackError(f"coordinate {i} is not [lon, lat]")
        acc = None
        if accuracies is not None and i < len(accuracies) and accuracies[i] is not None:
            acc = float(accuracies[i])
        t = None if times is None else _time(times[i], i)
        points.append((t, float(position[1]), float(position[0]), acc))
    return points


def _flat(values: Any) -> list[Any] | None:
    if values is None:
        return None
    if not isinstance(values, list):
        raise TrackError("times and accuracies must be lists")
    if values and all(isinstance(v, list) for v in values):  # MultiLineString coordTimes
        return [v for part in values for v in part]
    return values


def _time(value: Any, index: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise TrackError(f"time {index} ({value!r}) is neither Unix seconds nor ISO 8601")
