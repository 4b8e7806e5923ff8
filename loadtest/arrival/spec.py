"""The evaluation's input records: one TRIPS.json entry, one FIXES.jsonl line. Pure.

Parsing checks every field, so a bad file fails with the trip and field named instead of
a NaN somewhere in the scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geofence.fences import DEFAULT_RADIUS_M
from geofence.model import Fix


@dataclass(frozen=True)
class TripSpec:
    """One TRIPS.json entry. ``has_truth``: the entry says whether and when a visit happened.

    ``"arrived_t": null`` is truth ("never arrived": a drive-past); a missing ``arrived_t``
    means the truth is unknown and the trip is replayed but not scored.
    """

    trip_id: str
    dest_lat: float
    dest_lon: float
    radius_m: float = DEFAULT_RADIUS_M
    has_truth: bool = False
    arrived_t: float | None = None
    departed_t: float | None = None
    drove_off_t: float | None = None  # when the van pulled away (optional, diagnostic)
    kind: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def visit(self) -> bool:
        return self.has_truth and self.arrived_t is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TripSpec:
        """Parse and check one entry; ValueError names the trip and the field."""
        trip_id = str(data.get("trip_id", ""))
        try:
            dest = data["destination"]
            spec = cls(
                trip_id=trip_id,
                dest_lat=_finite(dest["lat"]),
                dest_lon=_finite(dest["lon"]),
                radius_m=_finite(data.get("geofence_radius_m") or DEFAULT_RADIUS_M),
                has_truth="arrived_t" in data,
                arrived_t=_optional(data.get("arrived_t")),
                departed_t=_optional(data.get("departed_t")),
                drove_off_t=_optional(data.get("drove_off_t")),
                kind=None if data.get("kind") is None else str(data["kind"]),
                tags=tuple(str(tag) for tag in data.get("tags") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"trip {trip_id or '?'}: bad or missing field {exc}") from None
        if not trip_id:
            raise ValueError("a trip has no trip_id")
        if not (-90 <= spec.dest_lat <= 90 and -180 <= spec.dest_lon <= 180):
            raise ValueError(f"trip {trip_id}: destination out of range")
        if spec.radius_m <= 0:
            raise ValueError(f"trip {trip_id}: geofence_radius_m must be positive")
        return spec


def fix_from_dict(data: Mapping[str, Any]) -> tuple[str, Fix]:
    """One FIXES.jsonl record as (trip_id, Fix); ValueError says what is wrong."""
    try:
        trip_id = str(data["trip_id"])
        fix = Fix(
            t=_finite(data["t"]),
            lat=_finite(data["lat"]),
            lon=_finite(data["lon"]),
            acc=_optional(data.get("acc")),
            speed=_optional(data.get("speed")),
            heading=_optional(data.get("heading")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad or missing field {exc}") from None
    return trip_id, fix


def _finite(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("boolean")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not finite: {value!r}")
    return number


def _optional(value: Any) -> float | None:
    return None if value is None else _finite(value)
