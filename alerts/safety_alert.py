"""Safety alerts: things operators must see and acknowledge that are not (yet) incidents.

An overdue visit, a lost signal, a technician leaving the service area or entering a
restricted one. Lighter than an incident (no outcome, no escalation), but each is a record
with an id and its own acknowledgement, so "who saw it, when, and what did they note" has
an answer. Pure: functions take the time and return a new alert with the audit entry to
store next to it, like ``realtime/booking.py``, through the audited state machine the three
cores share (``alerts/lifecycle.py``); the whole lifecycle is the ``TRANSITIONS`` table below.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import msgspec

from alerts.incident import AuditEntry
from alerts.lifecycle import Lifecycle, Move


class AlertKind(StrEnum):
    VISIT_OVERDUE = "visit_overdue"  # an "are you OK?" went unanswered (with an incident)
    SIGNAL_LOST = "signal_lost"  # no fix for a while during a visit
    LEFT_SERVICE_AREA = "left_service_area"  # left a service_area zone during a visit
    ENTERED_RESTRICTED_AREA = "entered_restricted_area"  # entered a restricted zone


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"


class AlertAction(StrEnum):
    """What happened to an alert; the ``action`` of its audit entries."""

    RAISE = "raise"  # the creation record in the audit trail; not a transition
    ACK = "ack"


# (state, action) -> next state. Anything not in this table is an illegal transition.
TRANSITIONS: dict[tuple[AlertStatus, AlertAction], AlertStatus] = {
    (AlertStatus.OPEN, AlertAction.ACK): AlertStatus.ACKNOWLEDGED,
}


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


def _refuse(alert: SafetyAlert, action: AlertAction) -> IllegalAlertTransition:
    return IllegalAlertTransition(
        f"alert {alert.id} is {alert.status.value}: {action.value!r} is not allowed "
        f"(acknowledged by {alert.acked_by} at {alert.acked_t})"
    )


LIFECYCLE: Lifecycle[SafetyAlert, AlertStatus, AlertAction] = Lifecycle(
    TRANSITIONS,
    initial=AlertStatus.OPEN,
    state_of=lambda alert: alert.status,
    refuse=_refuse,
)


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

    def build(move: Move[AlertStatus, AlertAction]) -> SafetyAlert:
        return SafetyAlert(
            id=alert_id,
            kind=kind,
            t=move.t,
            technician_id=technician_id,
            booking_id=booking_id,
            message=message,
            status=move.target,
            zone_id=zone_id,
            zone_kind=zone_kind,
            incident_id=incident_id,
        )

    return LIFECYCLE.begin(AlertAction.RAISE, t=t, build=build, audit=_auditor(actor, message))


def acknowledge(
    alert: SafetyAlert, *, t: float, actor: str, note: str | None = None
) -> tuple[SafetyAlert, AuditEntry]:
    """Acknowledge an open alert; IllegalAlertTransition if it already was."""

    def advance(current: SafetyAlert, move: Move[AlertStatus, AlertAction]) -> SafetyAlert:
        return msgspec.structs.replace(
            current, status=move.target, acked_by=actor, acked_t=move.t, note=note
        )

    return LIFECYCLE.step(alert, AlertAction.ACK, t=t, advance=advance, audit=_auditor(actor, note))


def _auditor(
    actor: str, note: str | None
) -> Callable[[SafetyAlert, Move[AlertStatus, AlertAction]], AuditEntry]:
    """The audit entry of one move (the alert's audit shares the incident's entry struct)."""

    def audit(alert: SafetyAlert, move: Move[AlertStatus, AlertAction]) -> AuditEntry:
        return AuditEntry(t=move.t, action=move.action.value, actor=actor, note=note)

    return audit
