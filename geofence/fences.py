"""Booking fences: where "at the customer's home" begins.

A fence answers one question, the signed distance of a point to its edge in metres
(negative inside), which is all the presence detector needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from geofence.geo import distance_m

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
