"""Where each chaos technician is, when: a drive straight to the booking's door, then parked
there for the rest of the run, so that the hub's arrival detector checks it in. Pure.

Trip time runs ``time_scale`` times faster than the real clock. The fixes are stamped with
trip time laid out so that the last fix of the run is stamped about now: every stamp lies
in the past (the hub refuses fixes more than 120 s ahead of its clock) and positions,
stamps and the reported speed agree, so the detector sees an ordinary drive and stop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DESTINATION = (52.52, 13.405)
_M_PER_DEG_LAT = 111_320.0
SPEED_M_S = 8.0
ACC_M = 8.0
# Parked means gone indoors, where a phone's accuracy is several times worse: the hub's
# check-in takes its 120 s dwell only with that sign (a car queued by the door has none).
INDOOR_ACC_M = 30.0
# Parked fixes wander this far around the door (a phone indoors), well inside the 75 m fence.
JITTER_M = 4.0
# Within this of the door a fix is inside the fence whatever its accuracy: "parked".
PARKED_M = 30.0


@dataclass(frozen=True)
class TripFix:
    offset_s: float  # trip seconds after the first fix
    lat: float
    lon: float
    speed: float
    acc: float = ACC_M


def start_distance_m(index: int) -> float:
    """300-900 m out: every technician arrives within the first ~2 minutes of trip time."""
    return 300.0 + (index * 97) % 600


def fix_of(index: int, k: int, rate_hz: float, time_scale: float) -> TripFix:
    """Technician ``index``'s fix number ``k`` (0, 1, ...), sent ``k / rate_hz`` s into the run."""
    offset = k * time_scale / rate_hz
    bearing = (index * 2.399963) % (2 * math.pi)  # golden angle: from all sides
    left = max(0.0, start_distance_m(index) - SPEED_M_S * offset)
    acc = ACC_M
    if left > 0:
        speed = SPEED_M_S
    else:
        acc = INDOOR_ACC_M
        # Parked: a small deterministic wander, no speed (the detector's "not rolling").
        speed = 0.0
        left = JITTER_M * abs(math.sin(k * 1.7 + index))
        bearing += k * 2.1
    lat0, lon0 = DESTINATION
    lat = lat0 + left * math.cos(bearing) / _M_PER_DEG_LAT
    lon = lon0 + left * math.sin(bearing) / (_M_PER_DEG_LAT * math.cos(math.radians(lat0)))
    return TripFix(offset, lat, lon, speed, acc)


def parked_from_s(index: int) -> float:
    """Trip offset from which the technician is parked at the door."""
    return max(0.0, start_distance_m(index) - PARKED_M) / SPEED_M_S


def stamp_origin(wall_start: float, seconds: float, time_scale: float) -> float:
    """The Unix time of trip offset 0: the run's last fix is stamped ``wall_start + seconds``."""
    return wall_start - seconds * (time_scale - 1.0) - 1.0
