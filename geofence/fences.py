"""Booking fences: where "at the customer's home" begins.

A fence answers one question, the signed distance of a point to its edge in metres
(negative inside), which is all the presence detector needs. The default is a circle around
the destination; the platform may send a GeoJSON polygon instead (a gated community, a large
building), which is validated here by the geojson package and shapely, never by hand, and
refused with a GeoJSONError whose stable ``code`` says what is wrong.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

import geojson
import numpy as np
import shapely
import shapely.errors
import shapely.geometry
from shapely import MultiPolygon, Point, Polygon

from geofence.geo import WGS84, LocalProjection, distance_m

DEFAULT_RADIUS_M = 75.0


class Fence(Protocol):
    def signed_distance_m(self, lat: float, lon: float) -> float:
        """Metres from the fence edge: negative inside, positive outside."""
        ...


@dataclass(frozen=True)
class CircleFence:
    """A circle around the destination: the default fence."""

    lat: float
    lon: float
    radius_m: float = DEFAULT_RADIUS_M

    def signed_distance_m(self, lat: float, lon: float) -> float:
        return distance_m(self.lat, self.lon, lat, lon) - self.radius_m


# --- Polygon fences from GeoJSON -------------------------------------------------------------

# A booking fence is a home, a gated community or a large building. Over ~5 km² it is not a
# doorstep any more (a district drawn by mistake, or degrees read as the wrong unit), and
# under ~20 m² nobody could be seen inside it through 5-15 m of GPS noise.
MAX_FENCE_AREA_M2 = 5_000_000.0
MIN_FENCE_AREA_M2 = 20.0
# How far the booking destination may lie outside its own fence: a car park or a gate a
# little away from the address is normal, another part of town is a mistake.
MAX_DESTINATION_DISTANCE_M = 2000.0

Polygonal = Polygon | MultiPolygon


class GeoJSONError(Exception):
    """GeoJSON that cannot be a fence or zone: ``code`` is stable, ``message`` says what and where.

    The hub turns this into a 4xx body ``{code, message}``; nothing refused here reaches
    storage or the presence detector.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PolygonFence:
    """A polygon (or several) in lon/lat, measured in metres on a local projection.

    The polygon is projected once, onto an azimuthal equidistant plane centred on it; each
    query projects one point. Over a fence's few hundred metres the projection's distortion
    is micrometres, so distances are as good as geodesic ones at a fraction of the cost.
    """

    def __init__(self, geometry: Polygonal) -> None:
        if not isinstance(geometry, Polygon | MultiPolygon) or geometry.is_empty:
            raise ValueError("a PolygonFence needs a non-empty Polygon or MultiPolygon")
        self.geometry = geometry
        centre = geometry.centroid
        self.projection = LocalProjection(centre.y, centre.x)
        self.geometry_m: Polygonal = project(geometry, self.projection)
        self._boundary_m = self.geometry_m.boundary
        shapely.prepare(self.geometry_m)
        shapely.prepare(self._boundary_m)

    @property
    def area_m2(self) -> float:
        return float(self.geometry_m.area)

    def signed_distance_m(self, lat: float, lon: float) -> float:
        x, y = self.projection.to_xy(lat, lon)
        # Inside, the distance to the polygon itself is 0: measure to the boundary (holes
        # included, so a courtyard that is not part of the fence counts as outside).
        edge = float(shapely.distance(self._boundary_m, Point(x, y)))
        return -edge if shapely.contains_xy(self.geometry_m, x, y) else edge


def project(geometry: Polygonal, projection: LocalProjection) -> Polygonal:
    """The geometry in metres east/north of the projection's centre (pyproj vectorises)."""

    def forward(lonlat: np.ndarray) -> np.ndarray:
        x, y = projection.to_xy(lonlat[:, 1], lonlat[:, 0])  # type: ignore[arg-type]
        return np.column_stack([x, y])

    return shapely.transform(geometry, forward)


def geodesic_area_m2(geometry: Polygonal) -> float:
    """Area on the WGS84 ellipsoid. Orientation fixed first: pyproj signs areas by winding."""
    area, _ = WGS84.geometry_area_perimeter(shapely.orient_polygons(geometry))
    return abs(area)


def fence_from_geojson(
    obj: dict[str, Any],
    near: tuple[float, float] | None = None,
    max_distance_m: float = MAX_DESTINATION_DISTANCE_M,
) -> PolygonFence:
    """A booking fence from a GeoJSON Polygon/MultiPolygon, or a Feature holding one.

    ``near`` is the booking destination (lat, lon): it must be inside the fence or within
    ``max_distance_m`` of it. It also catches [lat, lon] positions that are still in range
    (Berlin read as lon 52.5, lat 13.4 lands in the Arabian Sea): if the fence is far from
    the destination but its mirror image is not, the error says "swapped", not "far".
    Raises GeoJSONError.
    """
    geometry, _ = parse_polygonal(obj, allow_collection=False)[0]
    fence = PolygonFence(geometry)
    distance = None if near is None else fence.signed_distance_m(*near)
    if near is not None and distance is not None and distance > max_distance_m:
        _refuse_if_swapped(geometry, near, distance, max_distance_m)
    check_area(geodesic_area_m2(geometry), MIN_FENCE_AREA_M2, MAX_FENCE_AREA_M2, "the fence")
    if distance is not None and distance > max_distance_m:
        raise GeoJSONError(
            "far_from_destination",
            f"the destination {near} is {distance:.0f} m outside the fence; it must be inside "
            f"or within {max_distance_m:.0f} m",
        )
    return fence


def _refuse_if_swapped(
    geometry: Polygonal, near: tuple[float, float], distance: float, max_distance_m: float
) -> None:
    swapped = shapely.transform(geometry, lambda xy: xy[:, ::-1])
    if _in_range(swapped) and PolygonFence(swapped).signed_distance_m(*near) <= max_distance_m:
        raise GeoJSONError(
            "coordinates_swapped",
            f"the fence is {distance / 1000:.1f} km from the destination {near} but would "
            "contain it with lat and lon exchanged: GeoJSON positions are [lon, lat]",
        )


def check_area(area_m2: float, min_m2: float, max_m2: float, what: str) -> None:
    if area_m2 > max_m2:
        raise GeoJSONError(
            "too_large",
            f"{what} covers {_area_text(area_m2)}, more than the {_area_text(max_m2)} allowed",
        )
    if area_m2 < min_m2:
        raise GeoJSONError(
            "too_small",
            f"{what} covers {_area_text(area_m2)}, less than the {_area_text(min_m2)} needed",
        )


def _area_text(area_m2: float) -> str:
    return f"{area_m2 / 1e6:,.2f} km²" if area_m2 >= 1e5 else f"{area_m2:,.1f} m²"


# --- Validation: the geojson package checks structure, shapely checks geometry ---------------


def parse_polygonal(obj: Any, *, allow_collection: bool) -> list[tuple[Polygonal, dict[str, Any]]]:
    """Validated (geometry, feature) pairs from a geometry, Feature or FeatureCollection.

    ``feature`` is the Feature object (``id``, ``properties``), or {} for a bare geometry.
    Coordinates are rounded to 6 decimals (~0.1 m) by the geojson package.
    """
    gj = _load(obj)
    kind = gj["type"]
    if kind == "FeatureCollection" and allow_collection:
        features = list(gj.get("features") or [])
        out = []
        for index, feature in enumerate(features):
            try:
                out.append(_feature(feature))
            except GeoJSONError as error:
                raise GeoJSONError(error.code, f"features[{index}]: {error.message}") from None
        return out
    if kind in ("Feature", "Polygon", "MultiPolygon"):
        return [_feature(gj)]
    expected = "a Feature, a FeatureCollection" if allow_collection else "a Feature"
    raise GeoJSONError(
        "wrong_geometry_type",
        f"got a {kind}; expected a Polygon or MultiPolygon, or {expected} holding one",
    )


def _load(obj: Any) -> geojson.GeoJSON:
    if not isinstance(obj, dict):
        raise GeoJSONError("invalid_geojson", f"expected a JSON object, got {type(obj).__name__}")
    try:
        text = json.dumps(obj)
    except (TypeError, ValueError) as error:
        raise GeoJSONError("invalid_geojson", f"not JSON: {error}") from None
    try:
        # Parsed from text, as a client would send it: geojson refuses NaN/Infinity and
        # non-numeric coordinates on the way in.
        gj = geojson.loads(text)
    except (TypeError, ValueError) as error:
        located = _locate_bad_value(obj)
        raise located or GeoJSONError("invalid_geojson", f"malformed GeoJSON: {error}") from None
    if not isinstance(gj, geojson.GeoJSON):
        kind = obj.get("type")
        problem = "has no 'type' member" if kind is None else f"has unknown type {kind!r}"
        raise GeoJSONError("invalid_geojson", f"the object {problem}; it is not GeoJSON")
    return gj


def _feature(gj: Any) -> tuple[Polygonal, dict[str, Any]]:
    if not isinstance(gj, geojson.GeoJSON):
        raise GeoJSONError("invalid_geojson", "not a GeoJSON object (no or unknown 'type')")
    feature: dict[str, Any] = {}
    if gj["type"] == "Feature":
        feature = dict(gj)
        if gj.get("geometry") is None:
            raise GeoJSONError("missing_geometry", "the Feature's geometry is missing or null")
        gj = gj["geometry"]
        if not isinstance(gj, geojson.GeoJSON):
            raise GeoJSONError("invalid_geojson", "the Feature's geometry has no known 'type'")
    if gj["type"] not in ("Polygon", "MultiPolygon"):
        raise GeoJSONError(
            "wrong_geometry_type", f"got a {gj['type']}; expected a Polygon or MultiPolygon"
        )
    return _geometry(gj), feature


def _geometry(gj: geojson.GeoJSON) -> Polygonal:
    """The checks in an order where each error is the true one: geojson before shapely
    (shapely silently closes an unclosed ring), range before validity (a swapped polygon is
    a perfectly valid shape, in the wrong place)."""
    if not gj.get("coordinates"):
        raise GeoJSONError("missing_coordinates", f"the {gj['type']} has no coordinates")
    if not gj.is_valid:
        raise _ring_error(gj)
    try:
        geometry = shapely.force_2d(shapely.geometry.shape(gj))
    except (ValueError, TypeError, shapely.errors.ShapelyError) as error:
        located = _locate_bad_value(dict(gj))
        raise located or GeoJSONError("invalid_coordinates", str(error)) from None
    _check_range(geometry)
    reason = shapely.is_valid_reason(geometry)
    if reason != "Valid Geometry":
        raise _validity_error(reason)
    if geometry.is_empty:
        raise GeoJSONError("missing_coordinates", f"the {gj['type']} is empty")
    return geometry


def _ring_error(gj: geojson.GeoJSON) -> GeoJSONError:
    """geojson says a ring is bad but not which: ask it again ring by ring to name it."""
    multi = gj["type"] == "MultiPolygon"
    try:
        for p, rings in enumerate(gj["coordinates"] if multi else [gj["coordinates"]]):
            for r, ring in enumerate(rings):
                name = ("outer ring" if r == 0 else f"hole {r}") + (
                    f" of polygon {p}" if multi else ""
                )
                if not isinstance(ring, list) or not all(isinstance(x, list) for x in ring):
                    return GeoJSONError(
                        "invalid_coordinates",
                        f"the {name} is {ring!r}, not an array of [lon, lat] positions",
                    )
                errors = str(geojson.Polygon([ring]).errors() or "")
                if "end where it started" in errors:
                    return GeoJSONError(
                        "unclosed_ring",
                        f"the {name} is not closed: it starts at {ring[0]} and ends at "
                        f"{ring[-1]}; the last position must repeat the first",
                    )
                if errors:
                    return GeoJSONError(
                        "ring_too_short",
                        f"the {name} has {len(ring)} positions; a closed ring needs at least 4",
                    )
    except TypeError:  # not even arrays of rings
        pass
    return GeoJSONError(
        "invalid_coordinates",
        f"the {gj['type']}'s coordinates are not arrays of rings: {gj.errors()}",
    )


def _in_range(geometry: Polygonal) -> bool:
    xy = shapely.get_coordinates(geometry)
    return bool((np.abs(xy[:, 0]) <= 180).all() and (np.abs(xy[:, 1]) <= 90).all())


def _check_range(geometry: Polygonal) -> None:
    xy = shapely.get_coordinates(geometry)
    bad = (np.abs(xy[:, 0]) > 180) | (np.abs(xy[:, 1]) > 90)
    if not bad.any():
        span = float(np.ptp(xy[:, 0])) if len(xy) else 0.0
        if span > 180:
            # Edges are straight in lon/lat (RFC 7946): this one goes the long way round.
            raise GeoJSONError(
                "crosses_antimeridian",
                f"the polygon spans {span:.1f}° of longitude; one that crosses the antimeridian "
                "must be split into a MultiPolygon at ±180° (RFC 7946 §3.1.9)",
            )
        return
    lon, lat = (round(float(v), 6) for v in xy[int(np.argmax(bad))])
    position = f"[{lon}, {lat}]"
    if (np.abs(xy[:, 0]) <= 90).all() and (np.abs(xy[:, 1]) <= 180).all():
        raise GeoJSONError(
            "coordinates_swapped",
            f"position {position} has latitude {lat}, beyond ±90; the positions look like "
            "[lat, lon], GeoJSON wants [lon, lat]",
        )
    raise GeoJSONError(
        "coordinates_out_of_range",
        f"position {position} is outside longitude ±180 / latitude ±90",
    )


_WHERE = re.compile(r"\[(\S+) (\S+)\]")


def _validity_error(reason: str) -> GeoJSONError:
    # shapely reports e.g. "Self-intersection[13.4 52.5]": keep its words, name the place.
    found = _WHERE.search(reason)
    what = reason[: found.start()] if found else reason
    where = f" at lon {found[1]}, lat {found[2]}" if found else ""
    if "Self-intersection" in what:
        return GeoJSONError(
            "self_intersection",
            f"the boundary crosses itself (or two polygons overlap){where}: {reason}",
        )
    if what.startswith("Too few points"):
        return GeoJSONError("ring_too_short", f"a ring has too few distinct points{where}")
    return GeoJSONError("invalid_geometry", f"{what}{where}")


def _locate_bad_value(
    value: Any, path: str = "", in_coordinates: bool = False
) -> GeoJSONError | None:
    """The first NaN/Infinity (anywhere) or non-number (in coordinates), by its path.

    Only called after geojson or shapely refused the input, to say where; never to decide.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            found = _locate_bad_value(item, f"{path}.{key}".lstrip("."), key == "coordinates")
            if found:
                return found
        return None
    if isinstance(value, list):
        is_position = in_coordinates and not any(isinstance(v, list) for v in value)
        if is_position and len(value) < 2:
            return GeoJSONError(
                "invalid_coordinates", f"{path} is {value!r}: a position needs [lon, lat]"
            )
        for index, item in enumerate(value):
            found = _locate_bad_value(item, f"{path}[{index}]", in_coordinates)
            if found:
                return found
        return None
    if isinstance(value, float) and not math.isfinite(value):
        code = "invalid_coordinates" if in_coordinates else "invalid_geojson"
        return GeoJSONError(code, f"{path} is {value}: NaN and Infinity are not numbers in JSON")
    if in_coordinates and path.endswith("coordinates"):
        return GeoJSONError("invalid_coordinates", f"{path} is {value!r}, not an array")
    if in_coordinates and (isinstance(value, bool) or not isinstance(value, int | float)):
        return GeoJSONError("invalid_coordinates", f"{path} is {value!r}, not a number")
    return None
