"""Booking fences: metric correctness and GeoJSON that is refused with a code and a reason."""

from __future__ import annotations

import math
from typing import Any

import pytest
import shapely

from geofence.fences import CircleFence, GeoJSONError, PolygonFence, fence_from_geojson
from geofence.geo import LocalProjection, destination_point

BERLIN = (52.52, 13.405)
OSLO_60N = (60.0, 10.75)
EQUATOR = (0.0, 30.0)
TOKYO = (35.68, 139.77)


def square_ring(centre: tuple[float, float], half_m: float) -> list[list[float]]:
    """A closed [lon, lat] ring: a square 2*half_m on a side, built in metres."""
    projection = LocalProjection(*centre)
    corners = [(-half_m, -half_m), (half_m, -half_m), (half_m, half_m), (-half_m, half_m)]
    ring = [list(reversed(projection.to_latlon(x, y))) for x, y in corners]
    return [*ring, ring[0]]


def polygon(centre: tuple[float, float] = BERLIN, half_m: float = 100) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [square_ring(centre, half_m)]}


def refused(obj: Any, **kwargs: Any) -> GeoJSONError:
    with pytest.raises(GeoJSONError) as caught:
        fence_from_geojson(obj, **kwargs)
    return caught.value


# --- metric correctness ---------------------------------------------------------------------


@pytest.mark.parametrize("centre", [EQUATOR, OSLO_60N], ids=["equator", "60N"])
@pytest.mark.parametrize("bearing", [0, 90, 225])
def test_circle_of_100_m_is_100_m_at_any_latitude(centre: tuple[float, float], bearing: float):
    fence = CircleFence(*centre, radius_m=100)
    assert fence.signed_distance_m(*destination_point(*centre, bearing, 99)) < 0
    assert fence.signed_distance_m(*destination_point(*centre, bearing, 101)) > 0


@pytest.mark.parametrize("centre", [EQUATOR, OSLO_60N], ids=["equator", "60N"])
def test_polygon_circle_of_100_m_is_100_m_at_any_latitude(centre: tuple[float, float]):
    projection = LocalProjection(*centre)
    metric = shapely.Point(0, 0).buffer(100, quad_segs=32)
    ring = [list(reversed(projection.to_latlon(x, y))) for x, y in metric.exterior.coords]
    fence = fence_from_geojson({"type": "Polygon", "coordinates": [ring]}, near=centre)
    for bearing in range(0, 360, 30):
        assert fence.signed_distance_m(*destination_point(*centre, bearing, 99)) < 0
        assert fence.signed_distance_m(*destination_point(*centre, bearing, 101)) > 0


@pytest.mark.parametrize("centre", [EQUATOR, BERLIN, OSLO_60N], ids=["equator", "52N", "60N"])
@pytest.mark.parametrize(
    ("bearing", "metres", "expected"),
    [
        (0, 0, -100.0),  # centre: 100 m from every edge
        (0, 30, -70.0),
        (90, 99, -1.0),
        (180, 100, 0.0),  # on the south edge
        (270, 150, 50.0),
        (0, 400, 300.0),
        (45, 150 * math.sqrt(2), 50 * math.sqrt(2)),  # beyond the NE corner: to the corner
    ],
)
def test_square_of_200_m_signed_distances(
    centre: tuple[float, float], bearing: float, metres: float, expected: float
):
    fence = fence_from_geojson(polygon(centre), near=centre)
    point = destination_point(*centre, bearing, metres)
    assert fence.signed_distance_m(*point) == pytest.approx(expected, abs=0.5)


def test_square_area_is_metric():
    fence = fence_from_geojson(polygon(OSLO_60N), near=OSLO_60N)
    assert fence.area_m2 == pytest.approx(40_000, rel=1e-3)


def test_polygon_fence_is_a_fence_like_circle():
    fence = PolygonFence(shapely.geometry.shape(polygon()))
    assert fence.signed_distance_m(*BERLIN) == pytest.approx(-100, abs=0.5)


def test_hole_counts_as_outside():
    outer = square_ring(BERLIN, 100)
    courtyard = square_ring(BERLIN, 20)
    fence = fence_from_geojson({"type": "Polygon", "coordinates": [outer, courtyard]})
    assert fence.signed_distance_m(*BERLIN) == pytest.approx(20, abs=0.5)
    assert fence.signed_distance_m(*destination_point(*BERLIN, 0, 50)) == pytest.approx(
        -30, abs=0.5
    )


def test_multipolygon_fence_is_inside_either_part():
    # LocalProjection centres on 4-decimal degrees: round so the square is centred on `east`.
    lat, lon = destination_point(*BERLIN, 90, 500)
    east = (round(lat, 4), round(lon, 4))
    fence = fence_from_geojson(
        {
            "type": "MultiPolygon",
            "coordinates": [[square_ring(BERLIN, 100)], [square_ring(east, 50)]],
        },
        near=BERLIN,
    )
    assert fence.signed_distance_m(*BERLIN) == pytest.approx(-100, abs=0.5)
    assert fence.signed_distance_m(*east) == pytest.approx(-50, abs=0.5)
    between = destination_point(*BERLIN, 90, 200)  # 100 m from one part, ~250 m from the other
    assert fence.signed_distance_m(*between) == pytest.approx(100, abs=0.5)


def test_feature_holding_a_polygon_is_accepted():
    feature = {"type": "Feature", "geometry": polygon(), "properties": {"name": "Block 7"}}
    assert fence_from_geojson(feature, near=BERLIN).signed_distance_m(*BERLIN) < 0


def test_destination_a_little_outside_is_accepted():
    gate = destination_point(*BERLIN, 0, 300)  # 200 m outside the north edge
    fence = fence_from_geojson(polygon(), near=gate)
    assert fence.signed_distance_m(*gate) == pytest.approx(200, abs=0.5)


# --- bad GeoJSON: each refused with its code and a message naming the problem ----------------


def test_unclosed_ring_names_the_ring():
    ring = square_ring(BERLIN, 100)[:-1]
    error = refused({"type": "Polygon", "coordinates": [ring]})
    assert error.code == "unclosed_ring"
    assert "outer ring is not closed" in error.message


def test_unclosed_hole_of_second_polygon_is_named():
    hole = square_ring(BERLIN, 20)[:-1]
    multi = {
        "type": "MultiPolygon",
        "coordinates": [[square_ring(BERLIN, 200)], [square_ring(BERLIN, 100), hole]],
    }
    error = refused(multi)
    assert error.code == "unclosed_ring"
    assert "hole 1 of polygon 1" in error.message


def test_self_intersecting_bowtie_says_where():
    a, b, c, d, _ = square_ring(BERLIN, 100)
    error = refused({"type": "Polygon", "coordinates": [[a, c, b, d, a]]})
    assert error.code == "self_intersection"
    assert "crosses itself" in error.message
    assert "lon 13.405" in error.message and "lat 52.52" in error.message


def test_overlapping_multipolygon_parts_are_refused():
    multi = {
        "type": "MultiPolygon",
        "coordinates": [[square_ring(BERLIN, 100)], [square_ring(BERLIN, 50)]],
    }
    assert refused(multi).code in {"self_intersection", "invalid_geometry"}


def test_latitude_beyond_90_is_recognised_as_swapped():
    ring = [[lat, lon] for lon, lat in square_ring(TOKYO, 100)]  # [lat, lon]: lat 139.77
    error = refused({"type": "Polygon", "coordinates": [ring]})
    assert error.code == "coordinates_swapped"
    assert "[lon, lat]" in error.message and "139.76" in error.message


def test_swapped_polygon_in_the_ocean_is_recognised_from_the_destination():
    # [lat, lon] for Berlin is a valid position in the Arabian Sea: only the destination shows it.
    ring = [[lat, lon] for lon, lat in square_ring(BERLIN, 100)]
    error = refused({"type": "Polygon", "coordinates": [ring]}, near=BERLIN)
    assert error.code == "coordinates_swapped"
    assert "lat and lon exchanged" in error.message


def test_out_of_range_that_swapping_cannot_fix():
    ring = [[lon + 200, lat] for lon, lat in square_ring(BERLIN, 100)]
    assert refused({"type": "Polygon", "coordinates": [ring]}).code == "coordinates_out_of_range"


def test_fence_far_from_destination():
    error = refused(polygon(), near=destination_point(*BERLIN, 0, 5000))
    assert error.code == "far_from_destination"
    assert "outside the fence" in error.message and "2000 m" in error.message


def test_district_sized_fence_is_too_large():
    error = refused(polygon(half_m=2000), near=BERLIN)  # 16 km²
    assert error.code == "too_large"
    assert "16.00 km²" in error.message


def test_doormat_sized_fence_is_too_small():
    error = refused(polygon(half_m=2), near=BERLIN)  # 16 m²
    assert error.code == "too_small"
    assert "m²" in error.message


@pytest.mark.parametrize(
    ("obj", "kind"),
    [
        ({"type": "Point", "coordinates": [13.405, 52.52]}, "Point"),
        ({"type": "LineString", "coordinates": [[13.4, 52.5], [13.5, 52.5]]}, "LineString"),
        ({"type": "FeatureCollection", "features": []}, "FeatureCollection"),
        (
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.4, 52.5]}},
            "Point",
        ),
    ],
)
def test_wrong_geometry_type(obj: dict[str, Any], kind: str):
    error = refused(obj)
    assert error.code == "wrong_geometry_type"
    assert f"got a {kind}" in error.message and "Polygon or MultiPolygon" in error.message


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        ({"foo": 1}, "no 'type'"),
        ({"type": "Circle", "radius": 5}, "unknown type 'Circle'"),
        ([13.4, 52.5], "expected a JSON object"),
        ("POLYGON((0 0, 1 0, 1 1, 0 0))", "expected a JSON object"),
        ({"type": "Polygon", "coordinates": [[{1, 2}]]}, "not JSON"),
    ],
)
def test_garbage_is_invalid_geojson(obj: Any, words: str):
    error = refused(obj)
    assert error.code == "invalid_geojson"
    assert words in error.message


@pytest.mark.parametrize("obj", [{"type": "Polygon"}, {"type": "MultiPolygon", "coordinates": []}])
def test_missing_coordinates(obj: dict[str, Any]):
    error = refused(obj)
    assert error.code == "missing_coordinates"
    assert "no coordinates" in error.message


def test_feature_without_geometry():
    error = refused({"type": "Feature", "geometry": None, "properties": {}})
    assert error.code == "missing_geometry"


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("13.4", "coordinates[0][2][0] is '13.4', not a number"),
        (None, "coordinates[0][2][0] is None, not a number"),
        (math.nan, "coordinates[0][2][0] is nan"),
        (math.inf, "coordinates[0][2][0] is inf"),
    ],
)
def test_non_numeric_and_non_finite_coordinates_are_located(bad: Any, words: str):
    ring = square_ring(BERLIN, 100)
    ring[2] = [bad, ring[2][1]]
    error = refused({"type": "Polygon", "coordinates": [ring]})
    assert error.code == "invalid_coordinates"
    assert words in error.message


def test_nan_in_the_closing_position_is_not_reported_as_unclosed():
    ring = square_ring(BERLIN, 100)
    ring[0] = ring[-1] = [math.nan, 52.52]
    assert refused({"type": "Polygon", "coordinates": [ring]}).code == "invalid_coordinates"


def test_position_with_one_number():
    ring = square_ring(BERLIN, 100)
    ring[1] = [13.4]
    error = refused({"type": "Polygon", "coordinates": [ring]})
    assert error.code == "invalid_coordinates"
    assert "coordinates[0][1]" in error.message and "[lon, lat]" in error.message


def test_ring_with_too_few_positions():
    a, b, *_ = square_ring(BERLIN, 100)
    error = refused({"type": "Polygon", "coordinates": [[a, b, a]]})
    assert error.code == "ring_too_short"
    assert "3 positions" in error.message


def test_hole_outside_the_shell_is_invalid_geometry():
    hole = square_ring(destination_point(*BERLIN, 90, 1000), 20)
    error = refused({"type": "Polygon", "coordinates": [square_ring(BERLIN, 100), hole]})
    assert error.code == "invalid_geometry"
    assert "Hole lies outside shell" in error.message


def test_error_str_carries_code_and_message():
    error = refused({"type": "Point", "coordinates": [0, 0]})
    assert str(error) == f"wrong_geometry_type: {error.message}"


@pytest.mark.parametrize(
    ("coordinates", "words"),
    [
        (5, "coordinates is 5, not an array"),
        ([5], "the outer ring is 5, not an array of [lon, lat] positions"),
        ([[13.4, 52.5, 13.41, 52.5]], "not an array of [lon, lat] positions"),
    ],
)
def test_coordinates_that_are_not_rings_of_positions(coordinates: Any, words: str):
    error = refused({"type": "Polygon", "coordinates": coordinates})
    assert error.code == "invalid_coordinates"
    assert words in error.message


def test_nan_outside_the_coordinates_is_invalid_geojson_and_located():
    feature = {"type": "Feature", "geometry": polygon(), "properties": {"floor": math.nan}}
    error = refused(feature)
    assert error.code == "invalid_geojson"
    assert "properties.floor is nan" in error.message


def test_polygon_across_the_antimeridian_must_be_split():
    ring = [[179.999, -17.0], [-179.999, -17.0], [-179.999, -16.99], [179.999, -16.99]]
    error = refused({"type": "Polygon", "coordinates": [[*ring, ring[0]]]})
    assert error.code == "crosses_antimeridian"
    assert "split" in error.message


def test_third_dimension_is_dropped():
    ring = [[lon, lat, 34.0] for lon, lat in square_ring(BERLIN, 100)]
    fence = fence_from_geojson({"type": "Polygon", "coordinates": [ring]}, near=BERLIN)
    assert not fence.geometry.has_z
    assert fence.signed_distance_m(*BERLIN) == pytest.approx(-100, abs=0.5)
