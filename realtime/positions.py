"""One fix, several shapes: the conversions between them, written once.

A technician's fix arrives as ``wire.Location``, is kept as ``StoredFix`` (history) and
``RosterEntry`` (shared last position), shown as ``wire.Position`` / ``wire.FleetEntry``, and
read by the pure cores as ``geofence.model.Fix``. The fields share their names, so each
conversion is ``msgspec.convert`` from the source's attributes; only the fields a shape adds
(who, when the hub received it) are passed in.
"""

from __future__ import annotations

from typing import Any

import msgspec

from geofence.model import Fix
from realtime import protocol as wire
from realtime.backends.base import StoredFix
from realtime.backends.roster import RosterEntry


def location_of(record: StoredFix | RosterEntry) -> wire.Location:
    """A stored or shared fix as the hub holds the newest one in memory."""
    return msgspec.convert(record, wire.Location, from_attributes=True)


def plain_fix(fix: wire.Location) -> Fix:
    """The pure cores' fix (no seq)."""
    return msgspec.convert(fix, Fix, from_attributes=True)


def stored_fix(technician_id: str, fix: wire.Location, received_t: float) -> StoredFix:
    # Built directly: one per accepted fix, on the hot path.
    return StoredFix(
        technician_id,
        fix.seq,
        fix.t,
        fix.lat,
        fix.lon,
        fix.acc,
        fix.speed,
        fix.heading,
        received_t,
    )


def roster_entry(technician_id: str, fix: wire.Location, received_t: float) -> RosterEntry:
    return RosterEntry(
        technician_id=technician_id, received_t=received_t, **_shown_fields(fix), seq=fix.seq
    )


def position(technician_id: str, fix: wire.Location) -> wire.Position:
    """The ``position`` message watchers get for a technician's fix."""
    return wire.Position(technician_id=technician_id, seq=fix.seq, **_shown_fields(fix))


def fleet_entry(
    technician_id: str,
    online: bool,
    fix: wire.Location | None,
    *,
    name: str | None = None,
    status: str | None = None,
) -> wire.FleetEntry:
    shown = _shown_fields(fix) if fix is not None else {}
    return wire.FleetEntry(
        technician_id=technician_id, online=online, name=name, status=status, **shown
    )


def _shown_fields(fix: wire.Location) -> dict[str, Any]:
    """What a fix shows to watchers (positions and fleet entries carry the same fields)."""
    return {
        "t": fix.t,
        "lat": fix.lat,
        "lon": fix.lon,
        "acc": fix.acc,
        "speed": fix.speed,
        "heading": fix.heading,
    }
