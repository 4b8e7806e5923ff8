"""Escalation policy: pure decisions from (incident, policy, now); state lives in the incident."""

import msgspec
import pytest

from alerts.escalation import (
    ESCALATION_ACTOR,
    EscalationPolicy,
    EscalationStep,
    due_steps,
    mark_escalated,
    next_due_t,
)
from alerts.incident import (
    IllegalIncidentTransition,
    Incident,
    IncidentAction,
    IncidentStatus,
    Outcome,
    Reporter,
    apply,
    raise_incident,
)

T0 = 1_000.0
POLICY = EscalationPolicy()
TECH = Reporter(sub="tech-1", role="technician")


def new(t: float = T0) -> Incident:
    return raise_incident(incident_id="inc-1", client_id="u1", kind="sos", reporter=TECH, t=t)


def names(steps: list[EscalationStep]) -> list[str]:
    return [step.name for step in steps]


def fire(incident: Incident, policy: EscalationPolicy, now: float) -> tuple[Incident, list[str]]:
    """What the hub's timer does: fire every due step and mark it."""
    fired = []
    for step in due_steps(incident, policy, now):
        incident = mark_escalated(incident, step, now)
        fired.append(step.name)
    return incident, fired


def restart(incident: Incident) -> Incident:
    """What a hub restart does to an incident: stored as JSON, read back."""
    return msgspec.json.decode(msgspec.json.encode(incident), type=Incident)


# -- the policy -----------------------------------------------------------------------------


def test_default_policy_realerts_and_calls_the_supervisor_at_30_s_and_contacts_at_60_s():
    assert [(s.name, s.after_s, s.action) for s in POLICY.steps] == [
        ("realert", 30.0, "realert_operators"),
        ("supervisor", 30.0, "notify_supervisor"),
        ("contacts", 60.0, "notify_contacts"),
    ]
    assert EscalationPolicy.from_timers() == POLICY


def test_timers_are_configurable():
    policy = EscalationPolicy.from_timers(t1_s=10, t2_s=45)
    assert [(s.name, s.after_s) for s in policy.steps] == [
        ("realert", 10),
        ("supervisor", 10),
        ("contacts", 45),
    ]


def test_policy_refuses_unknown_actions_negative_delays_and_duplicate_names():
    with pytest.raises(ValueError, match="unknown action 'sms_pope'"):
        EscalationStep("x", 1, "sms_pope")
    with pytest.raises(ValueError, match="after_s must be >= 0"):
        EscalationStep("x", -1, "notify_contacts")
    with pytest.raises(ValueError, match="unique: a"):
        EscalationPolicy(
            steps=(
                EscalationStep("a", 1, "notify_contacts"),
                EscalationStep("a", 2, "realert_operators"),
            )
        )


def test_a_policy_without_steps_never_escalates():
    assert due_steps(new(), EscalationPolicy(steps=()), T0 + 3600) == []
    assert next_due_t(new(), EscalationPolicy(steps=())) is None


# -- what is due when -----------------------------------------------------------------------


def test_nothing_is_due_before_t1():
    assert due_steps(new(), POLICY, T0) == []
    assert due_steps(new(), POLICY, T0 + 29.999) == []


def test_realert_and_supervisor_are_due_at_t1_in_policy_order():
    assert names(due_steps(new(), POLICY, T0 + 30)) == ["realert", "supervisor"]


def test_contacts_are_due_at_t2_after_the_t1_steps_fired():
    incident, fired = fire(new(), POLICY, T0 + 30)
    assert fired == ["realert", "supervisor"]
    assert due_steps(incident, POLICY, T0 + 59) == []
    assert names(due_steps(incident, POLICY, T0 + 60)) == ["contacts"]


def test_steps_due_together_come_earliest_first_whatever_the_policy_order():
    policy = EscalationPolicy(
        steps=(
            EscalationStep("late", 60, "notify_contacts"),
            EscalationStep("early", 30, "realert_operators"),
        )
    )
    assert names(due_steps(new(), policy, T0 + 90)) == ["early", "late"]


@pytest.mark.parametrize(
    ("action", "kwargs"),
    [
        (IncidentAction.ACK, {}),
        (IncidentAction.RESOLVE, {"outcome": Outcome.SAFE}),
    ],
)
def test_nothing_is_due_once_an_operator_reacted(action, kwargs):
    incident = apply(new(), action, t=T0 + 10, actor="operator:op-1", **kwargs)
    assert due_steps(incident, POLICY, T0 + 3600) == []
    assert next_due_t(incident, POLICY) is None


def test_nothing_is_due_once_the_reporter_cancelled():
    incident = apply(new(), IncidentAction.CANCEL, t=T0 + 10, actor=TECH.actor)
    assert due_steps(incident, POLICY, T0 + 3600) == []


def test_acknowledging_between_t1_and_t2_stops_the_contacts_step():
    incident, _ = fire(new(), POLICY, T0 + 30)
    incident = apply(incident, IncidentAction.ACK, t=T0 + 45, actor="operator:op-1")
    assert due_steps(incident, POLICY, T0 + 60) == []


# -- each step once -------------------------------------------------------------------------


def test_a_marked_step_is_never_due_again():
    incident, fired = fire(new(), POLICY, T0 + 30)
    assert fired == ["realert", "supervisor"]
    assert due_steps(incident, POLICY, T0 + 30) == []
    incident, fired = fire(incident, POLICY, T0 + 60)
    assert fired == ["contacts"]
    assert due_steps(incident, POLICY, T0 + 10_000) == []
    assert incident.escalations == ("realert", "supervisor", "contacts")


def test_marking_a_step_twice_is_refused():
    step = POLICY.steps[0]
    incident = mark_escalated(new(), step, T0 + 30)
    with pytest.raises(IllegalIncidentTransition, match="'realert' was already done"):
        mark_escalated(incident, step, T0 + 31)


def test_marking_after_an_acknowledgement_is_refused_so_the_hub_does_not_send():
    incident = apply(new(), IncidentAction.ACK, t=T0 + 29.9, actor="operator:op-1")
    with pytest.raises(IllegalIncidentTransition, match="is acknowledged: 'escalate'"):
        mark_escalated(incident, POLICY.steps[0], T0 + 30)


def test_marking_audits_what_and_why_as_the_escalation_system():
    incident = mark_escalated(new(), POLICY.steps[2], T0 + 60)
    entry = incident.audit[-1]
    assert (entry.t, entry.action, entry.actor) == (T0 + 60, "escalate", ESCALATION_ACTOR)
    assert entry.note == "not acknowledged within 60 s: notify the person's emergency contacts"
    assert incident.status is IncidentStatus.OPEN and incident.updated_t == T0 + 60


# -- restarts -------------------------------------------------------------------------------


def test_after_a_restart_the_same_steps_are_due():
    before, _ = fire(new(), POLICY, T0 + 30)
    after = restart(before)
    assert after == before
    for now in (T0 + 45, T0 + 60, T0 + 500):
        assert due_steps(after, POLICY, now) == due_steps(before, POLICY, now)
    assert next_due_t(after, POLICY) == T0 + 60


def test_steps_overdue_after_downtime_fire_immediately_and_exactly_once():
    # The hub went down at T0 + 10 and came back at T0 + 95: every step is overdue.
    incident = restart(new())
    assert next_due_t(incident, POLICY) == T0 + 30  # in the past: fire now
    incident, fired = fire(incident, POLICY, T0 + 95)
    assert fired == ["realert", "supervisor", "contacts"]
    assert incident.audit[-1].note.endswith("(fired 35 s late)")
    # A second restart right after: nothing fires again.
    incident = restart(incident)
    assert fire(incident, POLICY, T0 + 96)[1] == []
    assert next_due_t(incident, POLICY) is None


def test_a_step_fired_before_a_crash_is_not_fired_again_after_it():
    incident, _ = fire(new(), POLICY, T0 + 30)
    incident = restart(incident)  # the crash happened right after the T1 steps were stored
    _, fired = fire(incident, POLICY, T0 + 70)
    assert fired == ["contacts"]


# -- next_due_t -----------------------------------------------------------------------------


def test_next_due_t_walks_through_the_policy():
    incident = new()
    assert next_due_t(incident, POLICY) == T0 + 30
    incident = mark_escalated(incident, POLICY.steps[0], T0 + 30)
    assert next_due_t(incident, POLICY) == T0 + 30  # supervisor still pending at T1
    incident = mark_escalated(incident, POLICY.steps[1], T0 + 30)
    assert next_due_t(incident, POLICY) == T0 + 60
    incident = mark_escalated(incident, POLICY.steps[2], T0 + 60)
    assert next_due_t(incident, POLICY) is None


def test_next_due_t_counts_from_the_raise_not_from_now():
    assert next_due_t(new(t=5_000.0), EscalationPolicy.from_timers(t1_s=12)) == 5_012.0
