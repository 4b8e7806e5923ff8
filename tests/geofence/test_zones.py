"""Platform zones: GeoJSON in, an STRtree index, enter/leave events per technician."""

from __future__ import annotations

from typing import Any

import pytest

from geofence.fences import GeoJSONError
from geofence.geo import LocalProjection, destination_point
from geofence.zones import Zone, ZoneEvent, ZoneIndex, ZoneTracker, zones_from_geojson

BERLIN = (52.52, 13.405)


def square(
    half_m: float, east: float = 0.0, north: float = 0.0, centre: tuple[float, float] = BERLIN
) -> dict[str, Any]:
    """A square Polygon 2*half_m on a side, centred this many metres east/north of centre."""
    projection = LocalProjection(*centre)  # one projection: building one costs ~10 ms
    corners = [(-half_m, -half_m), (half_m, -half_m), (half_m, half_m), (-half_m, half_m)]
    ring = [list(reversed(projection.to_latlon(east + x, north + y))) for x, y in corners]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def feature(geometry: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def offset(metres_east: float, metres_north: float = 0.0) -> tuple[float, float]:
    """A point this many metres east and north of Berlin, as (lat, lon)."""
    return LocalProjection(*BERLIN).to_latlon(metres_east, metres_north)


def city() -> ZoneIndex:
    """A 10 km service area with a restricted 200 m block in it and a depot outside it."""
    service = zones_from_geojson(feature(square(5000), kind="service_area", name="Berlin"), "svc")
    restricted = zones_from_geojson(
        feature(square(100, 1000), kind="restricted", name="Airport"), "restricted"
    )
    depot = zones_from_geojson(square(50, 6000), "depot")
    return ZoneIndex([*service, *restricted, *depot])


# --- GeoJSON to zones -----------------------------------------------------------------------


def test_feature_becomes_one_zone_with_kind_and_name():
    [zone] = zones_from_geojson(feature(square(500), kind="restricted", name="X"), "r1")
    assert (zone.id, zone.kind, zone.name) == ("r1", "restricted", "X")
    assert zone.properties == {"kind": "restricted", "name": "X"}


def test_bare_polygon_is_a_zone_of_the_default_kind():
    [zone] = zones_from_geojson(square(500), "z")
    assert (zone.id, zone.kind, zone.name) == ("z", "zone", None)


def test_feature_collection_with_mixed_kinds_gets_ids_by_feature_id_or_index():
    collection = {
        "type": "FeatureCollection",
        "features": [
            feature(square(5000), kind="service_area"),
            {**feature(square(100, 1000), kind="restricted"), "id": "airport"},
            feature(square(100, -1000), kind="parking", name="P1"),
        ],
    }
    zones = zones_from_geojson(collection, "berlin")
    assert [(z.id, z.kind) for z in zones] == [
        ("berlin/0", "service_area"),
        ("berlin/airport", "restricted"),
        ("berlin/2", "parking"),
    ]
    index = ZoneIndex(zones)
    assert {z.kind for z in index.zones_at(*offset(1000))} == {"service_area", "restricted"}
    assert {z.kind for z in index.zones_at(*offset(-1000))} == {"service_area", "parking"}


def test_multipolygon_zone():
    multi = {
        "type": "MultiPolygon",
        "coordinates": [
            square(100)["coordinates"],
            square(100, 500)["coordinates"],
        ],
    }
    index = ZoneIndex(zones_from_geojson(feature(multi, kind="restricted"), "m"))
    assert [z.id for z in index.zones_at(*offset(500))] == ["m"]
    assert index.zones_at(*offset(250)) == []


def test_bad_member_of_a_collection_is_named():
    bowtie = square(100)
    a, b, c, d, _ = bowtie["coordinates"][0]
    bowtie["coordinates"] = [[a, c, b, d, a]]
    collection = {
        "type": "FeatureCollection",
        "features": [feature(square(500)), feature(bowtie)],
    }
    with pytest.raises(GeoJSONError) as caught:
        zones_from_geojson(collection, "c")
    assert caught.value.code == "self_intersection"
    assert caught.value.message.startswith("features[1]: ")


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ({"type": "Point", "coordinates": [13.4, 52.5]}, "wrong_geometry_type"),
        (
            {"type": "Polygon", "coordinates": [square(100)["coordinates"][0][:-1]]},
            "unclosed_ring",
        ),
        ({"nothing": "here"}, "invalid_geojson"),
        ({"type": "Polygon"}, "missing_coordinates"),
    ],
)
def test_zones_share_the_fence_validation(obj: dict[str, Any], code: str):
    with pytest.raises(GeoJSONError) as caught:
        zones_from_geojson(obj, "z")
    assert caught.value.code == code


def test_zone_may_be_a_metropolis_but_not_a_country():
    assert zones_from_geojson(square(50_000), "metro")  # 10,000 km²
    with pytest.raises(GeoJSONError) as caught:
        zones_from_geojson(square(150_000), "country")  # 90,000 km²
    assert caught.value.code == "too_large"
    assert "50,000.00 km²" in caught.value.message


def test_swapped_zone_is_refused():
    tokyo = square(1000, centre=(35.68, 139.77))
    tokyo["coordinates"] = [[[lat, lon] for lon, lat in tokyo["coordinates"][0]]]
    with pytest.raises(GeoJSONError) as caught:
        zones_from_geojson(tokyo, "tokyo")
    assert caught.value.code == "coordinates_swapped"


def test_non_string_kind_is_refused():
    with pytest.raises(GeoJSONError) as caught:
        zones_from_geojson(feature(square(100), kind=7), "z")
    assert caught.value.code == "invalid_properties"
    assert "properties.kind" in caught.value.message


def test_duplicate_feature_ids_are_refused():
    one = {**feature(square(100)), "id": "a"}
    collection = {"type": "FeatureCollection", "features": [one, one]}
    with pytest.raises(GeoJSONError) as caught:
        zones_from_geojson(collection, "z")
    assert caught.value.code == "duplicate_zone_id"


# --- the index ------------------------------------------------------------------------------


def test_index_finds_the_right_zone_among_thousands():
    zones = []
    for i in range(60):
        for j in range(60):
            zones += zones_from_geojson(square(30, i * 100, j * 100), f"z{i}-{j}")
    index = ZoneIndex(zones)
    assert len(index) == 3600
    for i, j in [(0, 0), (17, 42), (59, 59), (31, 5)]:
        assert [z.id for z in index.zones_at(*offset(i * 100 + 25, j * 100 - 25))] == [f"z{i}-{j}"]
        assert index.zones_at(*offset(i * 100 + 50, j * 100)) == []  # the gap between zones


def test_overlapping_zones_are_all_returned_in_insertion_order():
    index = city()
    assert [z.id for z in index.zones_at(*offset(1000))] == ["svc", "restricted"]
    assert [z.id for z in index.zones_at(*BERLIN)] == ["svc"]
    assert [z.id for z in index.zones_at(*offset(6000))] == ["depot"]
    assert index.zones_at(*offset(0, 8000)) == []


def test_a_point_on_an_edge_is_inside():
    [zone] = zones_from_geojson(square(100), "z")
    lon, lat = zone.geometry.exterior.coords[0]
    assert [z.id for z in ZoneIndex([zone]).zones_at(lat, lon)] == ["z"]


def test_add_and_remove_return_new_indexes():
    index = city()
    extra = zones_from_geojson(square(100, 0, 8000), "north")
    bigger = index.add(*extra)
    assert len(index) == 3 and "north" not in index
    assert len(bigger) == 4 and [z.id for z in bigger.zones_at(*offset(0, 8000))] == ["north"]
    smaller = bigger.remove("restricted", "no-such-zone")
    assert [z.id for z in smaller.zones_at(*offset(1000))] == ["svc"]
    assert len(bigger) == 4


def test_add_with_an_existing_id_replaces_the_zone():
    index = city()
    [moved] = zones_from_geojson(feature(square(100, -3000), kind="restricted"), "restricted")
    index = index.add(moved)
    assert len(index) == 3
    assert [z.id for z in index.zones_at(*offset(1000))] == ["svc"]
    assert [z.id for z in index.zones_at(*offset(-3000))] == ["svc", "restricted"]


def test_duplicate_ids_in_one_index_are_refused():
    [zone] = zones_from_geojson(square(100), "z")
    with pytest.raises(ValueError, match="'z'"):
        ZoneIndex([zone, zone])


def test_empty_index():
    assert ZoneIndex().zones_at(*BERLIN) == [] and len(ZoneIndex()) == 0


# --- the tracker ----------------------------------------------------------------------------


def test_first_fix_inside_zones_enters_them():
    events = ZoneTracker().update(*offset(1000), t=10.0, index=city())
    assert events == [
        ZoneEvent("enter", "restricted", "restricted", 10.0),
        ZoneEvent("enter", "svc", "service_area", 10.0),
    ]


def test_first_fix_outside_every_zone_says_nothing():
    assert ZoneTracker().update(*offset(0, 8000), t=0.0, index=city()) == []


def test_walking_in_and_out_of_a_restricted_block():
    index, tracker = city(), ZoneTracker()
    path = [offset(500), offset(950), offset(1050), offset(1150), offset(1300)]
    events = [tracker.update(*point, t=float(t), index=index) for t, point in enumerate(path)]
    assert events == [
        [ZoneEvent("enter", "svc", "service_area", 0.0)],
        [ZoneEvent("enter", "restricted", "restricted", 1.0)],
        [],
        [ZoneEvent("leave", "restricted", "restricted", 3.0)],
        [],
    ]
    assert tracker.inside == {"svc"}


def test_leaving_one_zone_and_entering_another_in_one_fix():
    index, tracker = city(), ZoneTracker()
    tracker.update(*BERLIN, t=0.0, index=index)
    events = tracker.update(*offset(6000), t=1.0, index=index)
    assert events == [
        ZoneEvent("leave", "svc", "service_area", 1.0),
        ZoneEvent("enter", "depot", "zone", 1.0),
    ]


def test_removing_a_zone_under_the_technician_leaves_it():
    index, tracker = city(), ZoneTracker()
    tracker.update(*offset(1000), t=0.0, index=index)
    events = tracker.update(*offset(1000), t=1.0, index=index.remove("restricted"))
    assert events == [ZoneEvent("leave", "restricted", "restricted", 1.0)]


def test_trackers_are_independent():
    index = city()
    a, b = ZoneTracker(), ZoneTracker()
    a.update(*offset(1000), t=0.0, index=index)
    assert b.update(*destination_point(*BERLIN, 0, 10), t=0.0, index=index) == [
        ZoneEvent("enter", "svc", "service_area", 0.0)
    ]
    assert a.inside == {"svc", "restricted"}


def test_zone_is_a_plain_record():
    [zone] = zones_from_geojson(square(100), "z")
    assert isinstance(zone, Zone) and zone.geometry.geom_type == "Polygon"


def test_properties_must_be_an_object():
    with pytest.raises(GeoJSONError) as caught:
        zones_from_geojson({**feature(square(100)), "properties": [1]}, "z")
    assert caught.value.code == "invalid_properties"


def test_null_properties_give_the_default_kind():
    [zone] = zones_from_geojson({**feature(square(100)), "properties": None}, "z")
    assert (zone.kind, zone.properties) == ("zone", {})


def test_empty_collection_gives_no_zones():
    assert zones_from_geojson({"type": "FeatureCollection", "features": []}, "none") == []
