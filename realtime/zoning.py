"""Platform-wide zones (service areas, restricted areas) in the hub.

Zones are stored as the GeoJSON the platform sent (``documents`` namespace ``zones``) and
held in memory as one immutable ``ZoneIndex`` (STRtree), rebuilt on every change: changes
are rare, lookups happen on every fix. Each technician has a ``ZoneTracker`` that turns
positions into enter/leave events; the ones that matter for safety become stored alerts
(``realtime/alerting.py``) with an id operators acknowledge.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec

from alerts.safety_alert import AlertKind, open_alert
from geofence.zones import ZoneEvent, ZoneIndex, ZoneTracker, zones_from_geojson
from realtime.backends.base import Store
from realtime.booking import BookingStatus
from realtime.cluster import Entity
from realtime.ports import AcceptedFixes, AlertRaiser, Announce, BookingView

log = logging.getLogger("doorstep.zones")

ZONES = "zones"
SERVICE_AREA = "service_area"
RESTRICTED = "restricted"
IN_VISIT = frozenset({BookingStatus.ARRIVED, BookingStatus.IN_SERVICE})


class Zoning:
    def __init__(
        self, *, store: Store, announce: Announce, bookings: BookingView, alerts: AlertRaiser
    ) -> None:
        self.store = store
        self.announce = announce
        self.bookings = bookings
        self.alerts = alerts
        self.index = ZoneIndex([])
        self._documents: dict[str, Any] = {}
        self._trackers: dict[str, ZoneTracker] = {}

    async def load(self) -> None:
        """Read every zone from the store (at start, and when another hub changed one)."""
        self._documents = {}
        for zone_id, raw in (await self.store.list_documents(ZONES)).items():
            try:
                self._documents[zone_id] = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                log.error("stored zone %s is not JSON; skipped", zone_id)
        self._rebuild()

    def _rebuild(self) -> None:
        zones = []
        for zone_id, document in sorted(self._documents.items()):
            zones.extend(zones_from_geojson(document, zone_id))
        self.index = ZoneIndex(zones)

    def get(self, zone_id: str) -> Any | None:
        return self._documents.get(zone_id)

    def ids(self) -> list[str]:
        return sorted(self._documents)

    def ids_at(self, lat: float, lon: float) -> set[str]:
        """The zones containing the point, each by its own id and its document's id (a
        FeatureCollection's ``doc/feature``), so a city may name either."""
        found: set[str] = set()
        for zone in self.index.zones_at(lat, lon):
            found.add(zone.id)
            found.add(zone.id.split("/", 1)[0])
        return found

    async def put(self, zone_id: str, document: Any) -> list[Any]:
        """Validate (GeoJSONError on bad input), store, and index a zone document."""
        zones = zones_from_geojson(document, zone_id)
        await self.store.put_document(ZONES, zone_id, msgspec.json.encode(document))
        self._documents[zone_id] = document
        self._rebuild()
        await self.announce(Entity.ZONES)
        return zones

    async def delete(self, zone_id: str) -> bool:
        deleted = await self.store.delete_document(ZONES, zone_id)
        if self._documents.pop(zone_id, None) is not None:
            self._rebuild()
        await self.announce(Entity.ZONES)
        return deleted

    async def on_fixes(self, accepted: AcceptedFixes) -> None:
        """Zone membership follows every fix (an offline batch may cross a boundary and
        back), but never goes back in time."""
        if len(self.index) == 0:
            return
        for fix in accepted.fixes:
            if fix.t >= accepted.previous_t:
                await self.on_fix(accepted.technician_id, fix.lat, fix.lon, fix.t)

    async def on_fix(self, technician_id: str, lat: float, lon: float, t: float) -> None:
        """Track zone membership; alert operators on what matters during bookings."""
        if len(self.index) == 0:
            return
        tracker = self._trackers.setdefault(technician_id, ZoneTracker())
        for event in tracker.update(lat, lon, t, self.index):
            await self._maybe_alert(technician_id, event)

    async def _maybe_alert(self, technician_id: str, event: ZoneEvent) -> None:
        bookings = self.bookings.active_bookings_of(technician_id)
        # The visit in progress, not the next job: the alert is about where they are now.
        current = self.bookings.current_visit(technician_id)
        in_visit = current if current is not None and current.status in IN_VISIT else None
        if event.kind == "leave" and event.zone_kind == SERVICE_AREA and in_visit:
            kind = AlertKind.LEFT_SERVICE_AREA
            message = f"technician {technician_id} left service area {event.zone_id} during a visit"
            booking_id = in_visit.id
        elif event.kind == "enter" and event.zone_kind == RESTRICTED and bookings:
            kind = AlertKind.ENTERED_RESTRICTED_AREA
            message = f"technician {technician_id} entered restricted area {event.zone_id}"
            booking_id = (current or bookings[0]).id
        else:
            return
        alert, entry = open_alert(
            alert_id=f"alert-{uuid.uuid4().hex[:16]}",
            kind=kind,
            t=event.t,
            technician_id=technician_id,
            booking_id=booking_id,
            zone_id=event.zone_id,
            zone_kind=event.zone_kind,
            message=message,
            actor="system:zoning",
        )
        try:
            await self.alerts.raise_alert(alert, entry)
        except Exception:
            # This runs inside a technician's fix ingest: the fix is queued for the history
            # already, so a failing alert write must not turn into an error for the phone.
            log.exception("zone alert %s for %s could not be stored", kind, technician_id)
