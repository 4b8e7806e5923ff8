"""Escalation policy: what to do when nobody acknowledges an incident, and when.

Pure: the policy is data, the decisions are functions of (incident, policy, now). The only
state is the incident's ``escalations`` (the names of the steps already done), and the hub
stores it with the incident. That is what makes escalation survive a restart:

- A step's time is ``created_t + after_s``, from when the incident was raised, never from
  when a hub process started. After a restart the hub asks ``next_due_t`` of each stored
  open incident and sets its timer from that.
- A step already in ``escalations`` is never due again, so it fires at most once, whichever
  process or restart looks at it.
- A step whose time passed while the hub was down is due at once: ``due_steps`` returns it
  at start-up (all of the overdue ones together, in order) and ``mark_escalated`` records how
  late it fired. Late is better than never for a safety alert.

The hub marks a step and stores the incident in the same write that queues its
notifications; the notifiers retry and dead-letter those on their own, so a crash can
neither lose the step nor fire it twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from alerts.incident import Incident, IncidentAction, IncidentStatus, apply

REALERT_OPERATORS = "realert_operators"
NOTIFY_SUPERVISOR = "notify_supervisor"
NOTIFY_CONTACTS = "notify_contacts"

# What each action does, in the words the audit trail uses.
ACTIONS: dict[str, str] = {
    REALERT_OPERATORS: "re-alert all operators",
    NOTIFY_SUPERVISOR: "notify the supervisor webhook",
    NOTIFY_CONTACTS: "notify the person's emergency contacts",
}

ESCALATION_ACTOR = "system:escalation"

DEFAULT_T1_S = 30.0  # not acknowledged by then: every operator again, and a supervisor
DEFAULT_T2_S = 60.0  # not acknowledged by then: the people who know the person


@dataclass(frozen=True)
class EscalationStep:
    name: str  # stored in Incident.escalations: renaming a step re-fires it for open incidents
    after_s: float  # seconds after the incident was raised
    action: str  # one of ACTIONS

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an escalation step needs a name")
        if self.action not in ACTIONS:
            raise ValueError(
                f"escalation step {self.name!r}: unknown action {self.action!r} "
                f"(known: {', '.join(ACTIONS)})"
            )
        if not math.isfinite(self.after_s) or self.after_s < 0:
            raise ValueError(
                f"escalation step {self.name!r}: after_s must be >= 0, got {self.after_s}"
            )

    @property
    def note(self) -> str:
        """Why and what, for the audit trail: "not acknowledged within 30 s: ..."."""
        return f"not acknowledged within {self.after_s:g} s: {ACTIONS[self.action]}"


def _steps(t1_s: float, t2_s: float) -> tuple[EscalationStep, ...]:
    return (
        EscalationStep("realert", t1_s, REALERT_OPERATORS),
        EscalationStep("supervisor", t1_s, NOTIFY_SUPERVISOR),
        EscalationStep("contacts", t2_s, NOTIFY_CONTACTS),
    )


@dataclass(frozen=True)
class EscalationPolicy:
    """The steps, in the order they fire when due together. No steps: no escalation."""

    steps: tuple[EscalationStep, ...] = _steps(DEFAULT_T1_S, DEFAULT_T2_S)

    def __post_init__(self) -> None:
        names = [step.name for step in self.steps]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            # Names are what makes a step fire once; two steps sharing one would fire once.
            raise ValueError(f"escalation step names must be unique: {', '.join(duplicates)}")

    @classmethod
    def from_timers(
        cls, t1_s: float = DEFAULT_T1_S, t2_s: float = DEFAULT_T2_S
    ) -> EscalationPolicy:
        """The standard policy with its two timers configured (seconds after raising)."""
        return cls(steps=_steps(t1_s, t2_s))


def _pending(incident: Incident, policy: EscalationPolicy) -> list[EscalationStep]:
    # Only an unacknowledged incident escalates: once an operator acknowledged it (or it was
    # resolved or cancelled) nobody needs to be woken up any more.
    if incident.status is not IncidentStatus.OPEN:
        return []
    pending = [step for step in policy.steps if step.name not in incident.escalations]
    return sorted(pending, key=lambda step: step.after_s)  # stable: policy order on ties


def due_steps(incident: Incident, policy: EscalationPolicy, now: float) -> list[EscalationStep]:
    """The steps to fire at ``now``: not done yet and due, earliest first; [] unless open."""
    return [step for step in _pending(incident, policy) if incident.created_t + step.after_s <= now]


def next_due_t(incident: Incident, policy: EscalationPolicy) -> float | None:
    """When the next step is due (may be in the past after downtime: fire it now).

    None when nothing is pending or the incident is no longer open.
    """
    pending = _pending(incident, policy)
    return incident.created_t + pending[0].after_s if pending else None


def mark_escalated(
    incident: Incident, step: EscalationStep, t: float, by: str | None = None
) -> Incident:
    """Record that ``step`` fired at ``t``: its name in ``escalations`` and an audit entry.

    ``by`` names the hub that fired it (several hubs share the work; the audit says which).

    Raises IllegalIncidentTransition if the incident is not open any more (an operator
    acknowledged it in the meantime: do not send) or the step was already done.
    """
    note = step.note
    late_s = t - (incident.created_t + step.after_s)
    if late_s >= 1.0:
        note += f" (fired {late_s:.0f} s late)"
    if by:
        note += f" [hub {by}]"
    return apply(
        incident, IncidentAction.ESCALATE, t=t, actor=ESCALATION_ACTOR, note=note, step=step.name
    )
