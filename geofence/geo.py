"""Metric geometry on the WGS84 ellipsoid (pyproj): geodesic distances, local projections.

Degrees are never used as distances: a circle of 100 m is 100 m at the equator and in Oslo.
Polygons are measured in a local azimuthal equidistant projection centred on them, where
distances from the centre are exact and distortion over a city is far below GPS noise.
"""

from __future__ import annotations

import math
from functools import lru_cache

from pyproj import CRS, Geod, Transformer

WGS84 = Geod(ellps="WGS84")


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Geodesic distance in metres."""
    return WGS84.inv(lon1, lat1, lon2, lat2)[2]


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from point 1 to point 2, degrees clockwise from north (0..360)."""
    return WGS84.inv(lon1, lat1, lon2, lat2)[0] % 360.0


def destination_point(lat: float, lon: float, bearing: float, metres: float) -> tuple[float, float]:
    """The point ``metres`` away along ``bearing``: (lat, lon)."""
    lon2, lat2, _ = WGS84.fwd(lon, lat, bearing, metres)
    return lat2, lon2


# Metres per degree of latitude (the mean; grid cells need no more precision than this).
M_PER_DEG_LAT = 111_320.0


def grid_cell(lat: float, lon: float, cell_m: float) -> str:
    """The key ("row:col") of the ~``cell_m`` square grid cell holding a point; JSON-friendly.

    Rows are ``cell_m`` of latitude; meridians converge, so longitude columns are sized at
    the row's centre latitude to be about ``cell_m`` wide everywhere (clamped near the
    poles, where nobody drives).
    """
    step = cell_m / M_PER_DEG_LAT
    row = math.floor(lat / step)
    centre = (row + 0.5) * step
    lon_step = step / max(math.cos(math.radians(centre)), 0.01)
    return f"{row}:{math.floor(lon / lon_step)}"


class LocalProjection:
    """Azimuthal equidistant projection centred on (lat0, lon0): metres east/north."""

    def __init__(self, lat0: float, lon0: float) -> None:
        self.lat0 = lat0
        self.lon0 = lon0
        self._forward, self._inverse = _transformers(round(lat0, 4), round(lon0, 4))

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        return self._forward.transform(lon, lat)

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        lon, lat = self._inverse.transform(x, y)
        return lat, lon


@lru_cache(maxsize=4096)
def _transformers(lat0: float, lon0: float) -> tuple[Transformer, Transformer]:
    # Building a transformer costs ~1 ms; fences near each other share one (4 decimals ~ 10 m).
    local = CRS.from_proj4(f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m")
    return (
        Transformer.from_crs("EPSG:4326", local, always_xy=True),
        Transformer.from_crs(local, "EPSG:4326", always_xy=True),
    )
