"""Platform-wide zones (service areas, restricted areas) and entering/leaving them.

Zones arrive as GeoJSON Features or FeatureCollections and go through the same validation
as booking fences (geojson + shapely, same GeoJSONError codes) with a far larger size limit.
``ZoneIndex`` answers "which zones contain this point" from a shapely STRtree; it is
immutable, so a hub can swap in a rebuilt index between two fixes without locks and every
fix is checked against one consistent set of zones. ``ZoneTracker`` is the pure per-
technician core that turns successive answers into enter/leave events.

Containment is decided in lon/lat: GeoJSON edges are straight lines in lon/lat (RFC 7946),
so point-in-polygon there is exact; metres matter only for sizes, measured geodesically.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shapely import Point, STRtree

from geofence.fences import GeoJSONError, Polygonal, check_area, geodesic_area_m2, parse_polygonal

# A zone may be a whole metropolitan service area (Greater London is ~1,600 km², the Paris
# region ~12,000 km²). Beyond 50,000 km² it is a country drawn by mistake or degrees read as
# the wrong unit. Below 20 m² a zone is smaller than GPS noise and could never be entered.
MAX_ZONE_AREA_M2 = 50_000e6
MIN_ZONE_AREA_M2 = 20.0
DEFAULT_KIND = "zone"


@dataclass(frozen=True, slots=True, eq=False)
class Zone:
    """One zone. ``kind`` comes from ``properties.kind`` ("service_area", "restricted", ...)."""

    id: str
    kind: str
    name: str | None
    geometry: Polygonal  # lon/lat
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ZoneEvent:
    kind: Literal["enter", "leave"]
    zone_id: str
    zone_kind: str
    t: float


def zones_from_geojson(obj: Any, zone_id: str) -> list[Zone]:
    """Zones from a Feature (or a bare Polygon/MultiPolygon) or a FeatureCollection.

    A Feature or geometry becomes one zone with id ``zone_id``. Each feature of a
    FeatureCollection becomes ``{zone_id}/{feature id}``, or ``{zone_id}/{index}`` when
    the feature has no id, so the platform can later replace or remove one of them.
    Raises GeoJSONError (message prefixed ``features[i]:`` for a collection member).
    """
    parsed = parse_polygonal(obj, allow_collection=True)
    collection = isinstance(obj, dict) and obj.get("type") == "FeatureCollection"
    zones: list[Zone] = []
    seen: set[str] = set()
    for index, (geometry, feature) in enumerate(parsed):
        prefix = f"features[{index}]: " if collection else ""
        suffix = feature.get("id")
        zid = f"{zone_id}/{index if suffix is None else suffix}" if collection else zone_id
        if zid in seen:
            raise GeoJSONError("duplicate_zone_id", f"{prefix}zone id {zid!r} is used twice")
        seen.add(zid)
        try:
            check_area(geodesic_area_m2(geometry), MIN_ZONE_AREA_M2, MAX_ZONE_AREA_M2, "the zone")
            zones.append(_zone(zid, geometry, feature.get("properties")))
        except GeoJSONError as error:
            raise GeoJSONError(error.code, prefix + error.message) from None
    return zones


def _zone(zone_id: str, geometry: Polygonal, properties: Any) -> Zone:
    properties = {} if properties is None else properties
    if not isinstance(properties, dict):
        raise GeoJSONError(
            "invalid_properties", f"properties must be an object or null, got {properties!r}"
        )
    kind = properties.get("kind", DEFAULT_KIND)
    name = properties.get("name")
    if not isinstance(kind, str) or not kind:
        raise GeoJSONError("invalid_properties", f"properties.kind must be a string, got {kind!r}")
    if name is not None and not isinstance(name, str):
        raise GeoJSONError("invalid_properties", f"properties.name must be a string, got {name!r}")
    return Zone(zone_id, kind, name, geometry, dict(properties))


class ZoneIndex:
    """An immutable set of zones behind an STRtree; ``add``/``remove`` return a new index.

    Rebuilding is cheap (100k small zones in well under a second, see
    loadtest/results/zones.md) and zones change rarely, so an immutable index is simpler to
    reason about than in-place updates: readers never see a half-updated tree.
    """

    def __init__(self, zones: Iterable[Zone] = ()) -> None:
        by_id: dict[str, Zone] = {}
        for zone in zones:
            if zone.id in by_id:
                raise ValueError(f"zone id {zone.id!r} is used twice")
            by_id[zone.id] = zone
        self._by_id = by_id
        self._zones = list(by_id.values())
        self._tree = STRtree([zone.geometry for zone in self._zones])

    def zones_at(self, lat: float, lon: float) -> list[Zone]:
        """Zones containing the point, boundary included, in insertion order."""
        # "intersects" rather than "within": a fix exactly on an edge counts as inside, so a
        # point never falls between two zones that share an edge.
        hits = self._tree.query(Point(lon, lat), predicate="intersects")
        return [self._zones[i] for i in sorted(hits.tolist())]

    def add(self, *zones: Zone) -> ZoneIndex:
        """A new index with these zones; a zone with an existing id replaces the old one."""
        new = {zone.id: zone for zone in zones}
        kept = [zone for zone in self._zones if zone.id not in new]
        return ZoneIndex([*kept, *new.values()])

    def remove(self, *zone_ids: str) -> ZoneIndex:
        """A new index without these zones; unknown ids are ignored, so removal is idempotent."""
        gone = set(zone_ids)
        return ZoneIndex(zone for zone in self._zones if zone.id not in gone)

    def get(self, zone_id: str) -> Zone | None:
        return self._by_id.get(zone_id)

    def __contains__(self, zone_id: object) -> bool:
        return zone_id in self._by_id

    def __iter__(self) -> Iterator[Zone]:
        return iter(self._zones)

    def __len__(self) -> int:
        return len(self._zones)


class ZoneTracker:
    """Which zones one technician is in, and the events when that changes. Pure: no clock.

    The first update reports an "enter" for every zone the technician is already in: a
    shift that starts inside a restricted area must raise the same alert as walking into it.
    There is never a "leave" without an earlier "enter". A zone that disappears from the
    index while the technician is in it produces a "leave" (the platform removed it).
    Events come out leaves first, then enters, each sorted by zone id, so replays are stable.
    """

    def __init__(self) -> None:
        self._inside: dict[str, Zone] = {}

    @property
    def inside(self) -> frozenset[str]:
        return frozenset(self._inside)

    def update(self, lat: float, lon: float, t: float, index: ZoneIndex) -> list[ZoneEvent]:
        now = {zone.id: zone for zone in index.zones_at(lat, lon)}
        events = [
            ZoneEvent("leave", zid, self._inside[zid].kind, t)
            for zid in sorted(self._inside.keys() - now.keys())
        ]
        events += [
            ZoneEvent("enter", zid, now[zid].kind, t) for zid in sorted(now.keys() - self._inside)
        ]
        self._inside = now
        return events
