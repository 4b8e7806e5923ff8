"""The fix as geofence logic sees it: independent of the wire protocol."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fix:
    """One GPS fix. ``acc`` is the phone's reported horizontal accuracy (68 % radius, m)."""

    t: float
    lat: float
    lon: float
    acc: float | None = None
    speed: float | None = None
    heading: float | None = None
