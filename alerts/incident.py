"""The incident core: SOS and safety-alert lifecycle, with its audit trail.

Pure: no I/O and no clock. Every function takes the time as an argument and returns a new
``Incident`` (msgspec frozen Structs), so the hub, both backends, a restart and the tests all
drive the same code (sans-I/O, like h11's ``_state.py``). The whole lifecycle is the
``TRANSITIONS`` table below, driven by the audited state machine shared with the booking
and alert cores (``alerts/lifecycle.py``); a few guards (who may cancel, until when; resolve
needs an outcome) refine it, and every refusal names the state, the action and the reason.

Every transition appends an ``AuditEntry`` (time, action, actor, note): the trail of an
incident is the record of who did what when, which is what a safety review asks for.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from alerts.lifecycle import Lifecycle, Move, allowed_actions


class IncidentStatus(StrEnum):
    OPEN = "open"  # raised; nobody has reacted yet (escalation runs in this state only)
    ACKNOWLEDGED = "acknowledged"  # an operator is on it
    RESOLVED = "resolved"  # closed by an operator, with an outcome
    CANCELLED = "cancelled"  # withdrawn by its reporter within the grace period


class Outcome(StrEnum):
    SAFE = "safe"
    FALSE_ALARM = "false_alarm"
    HELP_DISPATCHED = "help_dispatched"
    POLICE_CALLED = "police_called"
    MEDICAL = "medical"
    OTHER = "other"


class IncidentAction(StrEnum):
    RAISE = "raise"  # the creation record in the audit trail; not a transition
    ACK = "ack"
    RESOLVE = "resolve"
    CANCEL = "cancel"
    ESCALATE = "escalate"  # one escalation step fired (alerts/escalation.py); state unchanged


S, A = IncidentStatus, IncidentAction

# (state, action) -> next state. Anything not in this table is an illegal transition.
TRANSITIONS: dict[tuple[IncidentStatus, IncidentAction], IncidentStatus] = {
    (S.OPEN, A.ACK): S.ACKNOWLEDGED,
    (S.OPEN, A.RESOLVE): S.RESOLVED,  # an operator may close it without acknowledging first
    (S.OPEN, A.CANCEL): S.CANCELLED,  # guarded: the reporter, within the grace period
    (S.OPEN, A.ESCALATE): S.OPEN,  # guarded: a step of the policy, each at most once
    (S.ACKNOWLEDGED, A.RESOLVE): S.RESOLVED,
}
# Deliberately absent: cancel once acknowledged. A human is handling it by then, and a
# reporter's "cancel" may be a mis-press or coerced; the operator closes it instead, with
# the outcome ``false_alarm`` once they have made sure. Same reason for the grace period.

OPEN_STATUSES = frozenset({S.OPEN, S.ACKNOWLEDGED})
CLOSED_STATUSES = frozenset({S.RESOLVED, S.CANCELLED})

DEFAULT_CANCEL_GRACE_S = 60.0
# The console draws the trail of an open incident; the full history stays in the location
# store (GET /v1/technicians/{id}/track). 2000 points is ~33 min at one fix per second and
# keeps one stored incident row small enough to rewrite on every change.
DEFAULT_MAX_TRAIL_POINTS = 2000


class IllegalIncidentTransition(Exception):
    """An action the incident's current state (or a guard on it) does not allow."""

    def __init__(
        self,
        incident_id: str,
        status: IncidentStatus,
        action: IncidentAction | str,
        reason: str | None = None,
    ) -> None:
        if reason is None:
            allowed = allowed_actions(TRANSITIONS, status)
            reason = f"allowed: {', '.join(allowed) or 'nothing, it is closed'}"
        super().__init__(
            f"incident {incident_id} is {status.value}: {str(action)!r} is not allowed ({reason})"
        )
        self.incident_id = incident_id
        self.status = status
        self.action = action
        self.reason = reason


class Reporter(msgspec.Struct, frozen=True):
    sub: str
    role: str  # "technician" | "customer" | "system"

    @property
    def actor(self) -> str:
        """The actor string the audit trail uses for this person, ``role:sub``."""
        return f"{self.role}:{self.sub}"


class IncidentLocation(msgspec.Struct, frozen=True, omit_defaults=True):
    lat: float
    lon: float
    t: float  # when the position was measured, not when the incident was raised
    source: str  # "sos" | "last_fix" | "booking_address"
    acc: float | None = None


class TrailPoint(msgspec.Struct, frozen=True, array_like=True):
    """One fix while the incident is open; an array on the wire, there can be thousands."""

    t: float
    lat: float
    lon: float
    acc: float | None


class AuditEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    t: float
    action: str
    actor: str
    note: str | None = None
    outcome: Outcome | None = None  # set on "resolve": the review wants it next to who and when


class Delivery(msgspec.Struct, frozen=True, omit_defaults=True):
    """One attempt to reach someone (FCM, webhook, ...), as reported by the notifiers."""

    t: float
    channel: str
    target: str
    step: str
    attempt: int
    ok: bool
    status: int | None = None
    error: str | None = None
    dead_letter: bool = False


class Incident(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    client_id: str  # the reporter's own id for it (the SOS uuid), for idempotent resends
    kind: str  # "sos" | "overdue_visit" | ...
    reporter: Reporter
    status: IncidentStatus
    created_t: float
    updated_t: float  # time of the last audit entry
    booking_id: str | None = None
    technician_id: str | None = None
    customer_id: str | None = None
    address: IncidentLocation | None = None  # the booking's destination
    location: IncidentLocation | None = None  # the SOS's own, else the last known fix
    note: str | None = None
    outcome: Outcome | None = None
    trail: tuple[TrailPoint, ...] = ()
    audit: tuple[AuditEntry, ...] = ()
    escalations: tuple[str, ...] = ()  # names of the escalation steps already done
    deliveries: tuple[Delivery, ...] = ()
    # The city whose escalation timers apply (the booking's, else the technician's).
    city: str | None = None

    @property
    def is_open(self) -> bool:
        """True while someone must still act on it (open or acknowledged)."""
        return self.status in OPEN_STATUSES

    @property
    def acknowledged(self) -> bool:
        """True while an operator has it in hand and it is not closed yet."""
        return self.status is S.ACKNOWLEDGED


def is_open(incident: Incident) -> bool:
    """True while someone must still act on it (open or acknowledged)."""
    return incident.is_open


def acknowledged(incident: Incident) -> bool:
    """True while an operator has it in hand and it is not closed yet."""
    return incident.acknowledged


LIFECYCLE: Lifecycle[Incident, IncidentStatus, IncidentAction] = Lifecycle(
    TRANSITIONS,
    initial=S.OPEN,
    state_of=lambda incident: incident.status,
    refuse=lambda incident, action: IllegalIncidentTransition(incident.id, incident.status, action),
)


def raise_incident(
    *,
    incident_id: str,
    client_id: str,
    kind: str,
    reporter: Reporter,
    t: float,
    booking_id: str | None = None,
    technician_id: str | None = None,
    customer_id: str | None = None,
    address: IncidentLocation | None = None,
    location: IncidentLocation | None = None,
    note: str | None = None,
    city: str | None = None,
) -> Incident:
    """A new open incident whose audit trail starts with the reporter's "raise" entry."""

    def build(move: Move[IncidentStatus, IncidentAction]) -> Incident:
        return Incident(
            id=incident_id,
            client_id=client_id,
            kind=kind,
            reporter=reporter,
            status=move.target,
            created_t=move.t,
            updated_t=move.t,
            booking_id=booking_id,
            technician_id=technician_id,
            customer_id=customer_id,
            address=address,
            location=location,
            note=note,
            city=city,
        )

    def audit(incident: Incident, move: Move[IncidentStatus, IncidentAction]) -> AuditEntry:
        return AuditEntry(t=move.t, action=move.action.value, actor=reporter.actor, note=note)

    incident, entry = LIFECYCLE.begin(A.RAISE, t=t, build=build, audit=audit)
    return msgspec.structs.replace(incident, audit=(entry,))


def apply(
    incident: Incident,
    action: IncidentAction,
    *,
    t: float,
    actor: str,
    note: str | None = None,
    outcome: Outcome | str | None = None,
    cancel_grace_s: float = DEFAULT_CANCEL_GRACE_S,
    step: str | None = None,
) -> Incident:
    """Apply one action and audit it; return the new incident or raise IllegalIncidentTransition.

    Who may ack or resolve (operators) is the hub's authorization; what the core checks is
    what the lifecycle itself needs: the table, the cancel guards, the outcome, the step.
    The guards run after the table check, so an action off the table is refused as such.
    """

    def advance(current: Incident, move: Move[IncidentStatus, IncidentAction]) -> Incident:
        resolved = _resolved_outcome(current, move.action, outcome)
        _check_cancel(current, move, actor, cancel_grace_s)
        escalations = _escalations(current, move.action, step)
        return msgspec.structs.replace(
            current,
            status=move.target,
            updated_t=move.t,
            outcome=resolved if resolved is not None else current.outcome,
            escalations=escalations,
        )

    def audit(new: Incident, move: Move[IncidentStatus, IncidentAction]) -> AuditEntry:
        resolved = new.outcome if move.action is A.RESOLVE else None
        return AuditEntry(
            t=move.t, action=move.action.value, actor=actor, note=note, outcome=resolved
        )

    new, entry = LIFECYCLE.step(incident, action, t=t, advance=advance, audit=audit)
    return msgspec.structs.replace(new, audit=(*new.audit, entry))


def _refuse(incident: Incident, action: IncidentAction, reason: str) -> IllegalIncidentTransition:
    return IllegalIncidentTransition(incident.id, incident.status, action, reason)


def _resolved_outcome(
    incident: Incident, action: IncidentAction, outcome: Outcome | str | None
) -> Outcome | None:
    """The outcome a "resolve" records; refuses a missing or unknown one, or one elsewhere."""
    if action is not A.RESOLVE:
        if outcome is not None:
            raise _refuse(incident, action, "an outcome is only given when resolving")
        return None
    if outcome is None:
        known = ", ".join(o.value for o in Outcome)
        raise _refuse(incident, action, "resolve needs an outcome: " + known)
    try:
        return Outcome(outcome)
    except ValueError:
        known = ", ".join(o.value for o in Outcome)
        raise _refuse(incident, action, f"unknown outcome {outcome!r}; known: {known}") from None


def _check_cancel(
    incident: Incident, move: Move[IncidentStatus, IncidentAction], actor: str, grace_s: float
) -> None:
    """Only the reporter cancels, and only within the grace period."""
    if move.action is not A.CANCEL:
        return
    if actor != incident.reporter.actor:
        raise _refuse(
            incident,
            move.action,
            f"only its reporter {incident.reporter.actor} may cancel it, not {actor}",
        )
    # Hub time on both sides (created_t is when the hub took it), so no device clock skew.
    elapsed = move.t - incident.created_t
    if elapsed > grace_s:
        raise _refuse(
            incident,
            move.action,
            f"the {grace_s:g} s grace period to cancel is over, it was raised {elapsed:g} s ago",
        )


def _escalations(incident: Incident, action: IncidentAction, step: str | None) -> tuple[str, ...]:
    """The escalation steps done after ``action``: one more on "escalate", each at most once."""
    if action is not A.ESCALATE:
        if step is not None:
            raise _refuse(incident, action, "a step is only given when escalating")
        return incident.escalations
    if not step:
        raise _refuse(incident, action, "escalate needs the step name")
    if step in incident.escalations:
        raise _refuse(incident, action, f"escalation step {step!r} was already done")
    return (*incident.escalations, step)


def location_age_s(incident: Incident, now: float) -> float | None:
    """How old the incident's location is at ``now``; None without a location.

    Never negative: a phone clock ahead of the hub's would otherwise show a fix "from the
    future", and the console would call a stale position fresh.
    """
    if incident.location is None:
        return None
    return max(0.0, now - incident.location.t)


def add_trail_point(
    incident: Incident, point: TrailPoint, max_points: int = DEFAULT_MAX_TRAIL_POINTS
) -> Incident:
    """Append a fix to the trail of an open incident; returns ``incident`` itself if ignored.

    Ignored: fixes after it closed (late fixes are normal, not errors), and fixes not newer
    than the last one (a phone resending its buffer after a dead zone). Fixes are not
    compared with ``created_t``: they carry the device's clock, ``created_t`` the hub's.
    Only the newest ``max_points`` are kept.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    if not incident.is_open:
        return incident
    if incident.trail and point.t <= incident.trail[-1].t:
        return incident
    return msgspec.structs.replace(incident, trail=(*incident.trail, point)[-max_points:])


def record_delivery(incident: Incident, delivery: Delivery) -> Incident:
    """Append a notifier's delivery report, in any state.

    A delivery may finish after the incident closed (a retry in flight when the operator
    resolved it); its record still belongs to the incident's history.
    """
    return msgspec.structs.replace(incident, deliveries=(*incident.deliveries, delivery))
