"""The shapes of the REST answers that are not a domain struct as it is stored.

Most endpoints answer ``msgspec.to_builtins(<domain struct>)`` (a Booking, an Incident, a
City...) and the OpenAPI document references that struct. The rest build a dict by hand;
these structs describe those dicts, field for field, so the document (``openapi.py``) can
say exactly what comes back and schemathesis can check real answers against it. The
endpoints do not build their answers from these (they stay as they are): the schemathesis
test over a live hub (tests/realtime/test_openapi_schemathesis.py) is what keeps the two
together.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from alerts.contacts import EmergencyContact
from alerts.incident import AuditEntry, Incident
from alerts.safety_alert import SafetyAlert
from realtime.booking import AuditEvent, Booking
from realtime.city import City
from realtime.history_score import HistoryScore
from realtime.privacy import AccessEntry
from realtime.profiles import TechnicianProfile
from realtime.protocol import Position
from realtime.stats import Stats


class Error(msgspec.Struct, frozen=True):
    """Every 4xx/5xx body: a stable ``code`` (the document lists them) and words for people."""

    code: str
    message: str


class BookingRead(Booking, frozen=True):
    """``GET /v1/bookings/{id}``: the booking, with its audit trail for the platform and
    operators (``events`` is absent for its customer and technician)."""

    events: tuple[AuditEvent, ...] = ()


class SosAnswer(msgspec.Struct, frozen=True):
    id: str
    incident: str
    status: str


class SosState(msgspec.Struct, frozen=True):
    """What a reporter may see of their SOS: its state, not the operators' notes."""

    id: str
    incident: str
    status: str
    outcome: str | None
    t: float


class IncidentList(msgspec.Struct, frozen=True):
    incidents: list[Incident]


class AlertList(msgspec.Struct, frozen=True):
    alerts: list[SafetyAlert]


class AlertWithAudit(SafetyAlert, frozen=True):
    audit: tuple[AuditEntry, ...] = ()


class Contacts(msgspec.Struct, frozen=True):
    contacts: list[EmergencyContact]


class MintedToken(msgspec.Struct, frozen=True):
    token: str
    expires_at: float
    role: str
    sub: str
    jti: str
    booking: str | None = None
    group: str | None = None


class Revoked(msgspec.Struct, frozen=True):
    """One of ``jti`` and ``sub`` (the one revoked), and when."""

    revoked_at: float
    jti: str | None = None
    sub: str | None = None


class ScoreComponents(msgspec.Struct, frozen=True):
    eta_s: float
    rating_s: float
    history_s: float
    fairness_s: float
    preferred_s: float


class RankedTechnician(msgspec.Struct, frozen=True):
    technician_id: str
    eta_s: float
    distance_m: float
    position_age_s: float
    components: ScoreComponents
    total_s: float


class ExcludedTechnician(msgspec.Struct, frozen=True):
    technician_id: str
    reason: str


class DispatchAnswer(msgspec.Struct, frozen=True):
    dry_run: bool
    booking: Booking
    ranking: list[RankedTechnician]
    excluded: list[ExcludedTechnician]


class BatchAssigned(RankedTechnician, frozen=True, kw_only=True):
    booking_id: str


class BatchUnassigned(msgspec.Struct, frozen=True):
    booking_id: str
    reason: str


class BatchAnswer(msgspec.Struct, frozen=True):
    dry_run: bool
    city: str | None
    assigned: list[BatchAssigned]
    unassigned: list[BatchUnassigned]
    total_s: float
    one_at_a_time_total_s: float
    one_at_a_time_served: int


class TechnicianOut(TechnicianProfile, frozen=True, kw_only=True):
    """``PUT /v1/technicians/{id}``: the profile as stored, with its id."""

    id: str


class TechnicianHistory(HistoryScore, frozen=True, kw_only=True):
    jobs_today: int


class TechnicianView(TechnicianOut, frozen=True, kw_only=True):
    """``GET /v1/technicians/{id}``: profile, live state and Doorstep's own record."""

    online: bool
    position: Position | None
    bookings: list[str]
    history: TechnicianHistory


class TrackProperties(msgspec.Struct, frozen=True):
    technician_id: str
    from_t: float = msgspec.field(name="from")
    to_t: float = msgspec.field(name="to")
    count: int = 0
    truncated: bool = False
    times: list[float] = []
    seqs: list[int] = []
    accuracies: list[float | None] = []


class TrackFeature(msgspec.Struct, frozen=True):
    """A GeoJSON Feature: a LineString (two fixes or more), a Point (one) or null (none)."""

    type: Literal["Feature"]
    geometry: dict[str, Any] | None
    properties: TrackProperties


class CityList(msgspec.Struct, frozen=True):
    cities: list[City]


class ZoneIds(msgspec.Struct, frozen=True):
    zones: list[str]


class ZoneSummary(msgspec.Struct, frozen=True):
    id: str
    kind: str
    name: str | None


class ZonePut(msgspec.Struct, frozen=True):
    id: str
    zones: list[ZoneSummary]


class Erasure(msgspec.Struct, frozen=True):
    role: str
    id: str
    erased: dict[str, int]
    kept: list[dict[str, Any]]


class AuditAnswer(msgspec.Struct, frozen=True):
    subject: str
    entries: list[AccessEntry]


class Health(msgspec.Struct, frozen=True):
    status: Literal["ok"]


class Readiness(msgspec.Struct, frozen=True):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]
    store_error: str | None = None
    tasks_down: list[str] = []


class StatsAnswer(Stats, frozen=True):
    """``GET /v1/stats``: the figures, with a breakdown by city (without ``?city=``) and by
    zone document (when zones exist)."""

    by_city: dict[str, Stats] | None = None
    by_zone: dict[str, Stats] | None = None
