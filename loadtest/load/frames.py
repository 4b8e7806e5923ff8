"""Frames pre-encoded before the run, so the generator is not the bottleneck.

Each fix's JSON is built once, before streaming starts, up to its send time: sending is
one string concatenation (``prefix + t + "}"``). The hub validates every frame, so the send
time goes where the protocol puts it, in ``t``; the ``position`` a customer receives carries
the same ``t`` and ``seq``, which is how latency is measured (both ends share this clock).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

# Destination of every booking; technicians start 3-6 km away and drive away from it, so
# none arrives (an arrival would change the booking while the load runs).
DESTINATION = (52.52, 13.405)
_M_PER_DEG_LAT = 111_320.0
_SPEED_M_S = 8.0


def start_point(index: int) -> tuple[float, float, float]:
    """Where technician ``index`` starts and the bearing it drives on (radians)."""
    bearing = (index * 2.399963) % (2 * math.pi)  # golden angle: spread around the city
    distance = 3000.0 + (index * 37) % 3000
    lat0, lon0 = DESTINATION
    lat = lat0 + distance * math.cos(bearing) / _M_PER_DEG_LAT
    lon = lon0 + distance * math.sin(bearing) / (_M_PER_DEG_LAT * math.cos(math.radians(lat0)))
    return lat, lon, bearing


def fix_prefixes(index: int, count: int, rate_hz: float) -> list[str]:
    """The JSON of technician ``index``'s fixes 1..count, each open before its ``t``."""
    lat, lon, bearing = start_point(index)
    step = _SPEED_M_S / rate_hz
    dlat = step * math.cos(bearing) / _M_PER_DEG_LAT
    dlon = step * math.sin(bearing) / (_M_PER_DEG_LAT * math.cos(math.radians(lat)))
    return [
        f'{{"type":"location","seq":{seq},"lat":{lat + seq * dlat:.6f},'
        f'"lon":{lon + seq * dlon:.6f},"acc":8.0,"speed":{_SPEED_M_S},"t":'
        for seq in range(1, count + 1)
    ]


def stamp(prefix: str, t: float) -> str:
    """A pre-encoded fix closed with its send time."""
    return f"{prefix}{t:.6f}}}"


def batch(points: Sequence[str]) -> str:
    """Buffered fixes (already stamped with the time they were taken) as one ``batch``."""
    return '{"type":"batch","points":[' + ",".join(points) + "]}"


def sos(client_id: str, t: float, lat: float, lon: float) -> str:
    """One SOS press; ``client_id`` names it so operators' receipts can be matched."""
    return f'{{"type":"sos","id":"{client_id}","t":{t:.6f},"lat":{lat:.6f},"lon":{lon:.6f}}}'


class Seen(msgspec.Struct):
    """What a receiver needs of any inbound message (unknown fields are skipped)."""

    type: str = ""
    seq: int | None = None
    t: float | None = None
    code: str | None = None
    points: list[Seen] | None = None
    incident: dict[str, object] | str | None = None


SEEN = msgspec.json.Decoder(Seen)


def incident_client_id(message: Seen) -> str | None:
    """The SOS id an ``incident`` message is about, ``None`` for other kinds."""
    incident = message.incident
    if not isinstance(incident, dict) or incident.get("kind") != "sos":
        return None
    client_id = incident.get("client_id")
    return client_id if isinstance(client_id, str) else None
