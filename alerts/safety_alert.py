"""Safety alerts: things operators must see and acknowledge that are not (yet) incidents.

An overdue visit, a lost signal, a technician leaving the service area or entering a
restricted one. Lighter than an incident (no outcome, no escalation), but each is a record
with an id and its own acknowledgement, so "who saw it, when, and what did they note" has
an answer. Pure: functions take the time and return a new alert with the audit entry to
store next to it, like ``realtime/booking.py``.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from alerts.incident import AuditEntry


class AlertKind(StrEnum):
    VISIT_OVERDUE = "visit_overdue"  # an "are you OK?" went unanswered (with an incident)
    SIGNAL_LOST = "signal_lost"  # no fix for a while during a visit
    LEFT_SERVICE_AREA = "left_service_area"  # left a service_area zone during a visit
    ENTERED_RESTRICTED_AREA = "entered_restricted_area"  # entered a restricted zone


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"


class SafetyAlert(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    kind: AlertKind
    t: float  # when it happened (the watchdog's time, or the fix that crossed the zone)
    technician_id: str
    booking_id: str
    message: str
    status: AlertStatus
    zone_id: str | None = None
    zone_kind: str | None = None
    incident_id: str | None = None  # the incident raised with it (visit_overdue)
    acked_by: str | None = None  # actor, "operator:<sub>"
    acked_t: float | None = None
    note: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status is AlertStatus.OPEN


class IllegalAlertTransition(Exception):
    """An alert acknowledged twice: the first operator's name and time stay."""


def open_alert(
    *,
    alert_id: str,
    kind: AlertKind,
    t: float,
    technician_id: str,
    booking_id: str,
    message: str,
    actor: str,
    zone_id: str | None = None,
    zone_kind: str | None = None,
    incident_id: str | None = None,
) -> tuple[SafetyAlert, AuditEntry]:
    """A new open alert and the "raise" entry of its audit trail."""
    alert = SafetyAlert(
        id=alert_id,
        kind=kind,
        t=t,
        technician_id=technician_id,
        booking_id=booking_id,
        message=message,
        status=AlertStatus.OPEN,
        zone_id=zone_id,
        zone_kind=zone_kind,
        incident_id=incident_id,
    )
    return alert, AuditEntry(t=t, action="raise", actor=actor, note=message)


def acknowledge(
    alert: SafetyAlert, *, t: float, actor: str, note: str | None = None
) -> tuple[SafetyAlert, AuditEntry]:
    """Acknowledge an open alert; IllegalAlertTransition if it already was."""
    if not alert.is_open:
        raise IllegalAlertTransition(
            f"alert {alert.id} is {alert.status.value}: 'ack' is not allowed "
            f"(acknowledged by {alert.acked_by} at {alert.acked_t})"
        )
    acked = msgspec.structs.replace(
        alert, status=AlertStatus.ACKNOWLEDGED, acked_by=actor, acked_t=t, note=note
    )
    return acked, AuditEntry(t=t, action="ack", actor=actor, note=note)
