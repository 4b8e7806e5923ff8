"""The incident core: pure, synchronous, time passed in."""

import msgspec
import pytest

from alerts.incident import (
    TRANSITIONS,
    AuditEntry,
    Delivery,
    IllegalIncidentTransition,
    Incident,
    IncidentAction,
    IncidentLocation,
    IncidentStatus,
    Outcome,
    Reporter,
    TrailPoint,
    acknowledged,
    add_trail_point,
    apply,
    is_open,
    location_age_s,
    raise_incident,
    record_delivery,
)

S, A = IncidentStatus, IncidentAction
T0 = 1_000.0
TECH = Reporter(sub="tech-1", role="technician")
OPERATOR = "operator:op-1"
HOME = IncidentLocation(lat=52.52, lon=13.405, t=900.0, source="booking_address")
FIX = IncidentLocation(lat=52.5201, lon=13.4049, t=990.0, source="sos", acc=8.0)


def new(**overrides) -> Incident:
    fields = dict(
        incident_id="inc-1",
        client_id="uuid-1",
        kind="sos",
        reporter=TECH,
        t=T0,
        booking_id="b1",
        technician_id="tech-1",
        customer_id="c1",
        address=HOME,
        location=FIX,
        note="help",
    )
    return raise_incident(**(fields | overrides))


def in_status(status: IncidentStatus) -> Incident:
    """An incident brought into ``status`` by the legal path."""
    incident = new()
    if status is S.ACKNOWLEDGED:
        incident = apply(incident, A.ACK, t=T0 + 5, actor=OPERATOR)
    elif status is S.RESOLVED:
        incident = apply(incident, A.RESOLVE, t=T0 + 5, actor=OPERATOR, outcome=Outcome.SAFE)
    elif status is S.CANCELLED:
        incident = apply(incident, A.CANCEL, t=T0 + 5, actor=TECH.actor)
    assert incident.status is status
    return incident


def legal_kwargs(action: IncidentAction) -> dict:
    """What each action needs besides the table, so the table alone decides in these tests."""
    return {
        A.RESOLVE: {"outcome": Outcome.SAFE},
        A.ESCALATE: {"step": "realert"},
    }.get(action, {})


def actor_for(action: IncidentAction) -> str:
    return TECH.actor if action is A.CANCEL else OPERATOR


# -- raising --------------------------------------------------------------------------------


def test_raised_incident_is_open_and_its_audit_starts_with_the_reporters_raise():
    incident = new()
    assert incident.status is S.OPEN and is_open(incident) and incident.is_open
    assert not acknowledged(incident)
    assert incident.created_t == incident.updated_t == T0
    assert incident.audit == (
        AuditEntry(t=T0, action="raise", actor="technician:tech-1", note="help"),
    )
    assert (incident.booking_id, incident.technician_id, incident.customer_id) == (
        "b1",
        "tech-1",
        "c1",
    )
    assert incident.address == HOME and incident.location == FIX
    assert incident.trail == () and incident.escalations == () and incident.deliveries == ()


def test_location_age_is_measured_from_the_fix_not_from_the_raise():
    assert location_age_s(new(), now=T0 + 20) == 30.0
    assert location_age_s(new(location=None), now=T0) is None


def test_location_from_a_phone_clock_ahead_is_never_younger_than_zero():
    ahead = IncidentLocation(lat=1.0, lon=2.0, t=T0 + 10, source="sos")
    assert location_age_s(new(location=ahead), now=T0) == 0.0


def test_incident_round_trips_through_json_unchanged():
    incident = add_trail_point(new(), TrailPoint(t=T0 + 1, lat=1.0, lon=2.0, acc=None))
    incident = apply(incident, A.RESOLVE, t=T0 + 9, actor=OPERATOR, outcome="medical", note="ok")
    incident = record_delivery(
        incident, Delivery(t=T0 + 2, channel="fcm", target="tok", step="raise", attempt=1, ok=True)
    )
    data = msgspec.json.encode(incident)
    assert msgspec.json.decode(data, type=Incident) == incident
    assert b'"trail":[[1001.0,1.0,2.0,null]]' in data  # trail points are compact arrays


# -- the transition table -------------------------------------------------------------------

LEGAL = sorted(TRANSITIONS.items())
ILLEGAL = [(s, a) for s in S for a in A if (s, a) not in TRANSITIONS]


def test_the_table_is_the_lifecycle():
    assert TRANSITIONS == {
        (S.OPEN, A.ACK): S.ACKNOWLEDGED,
        (S.OPEN, A.RESOLVE): S.RESOLVED,
        (S.OPEN, A.CANCEL): S.CANCELLED,
        (S.OPEN, A.ESCALATE): S.OPEN,
        (S.ACKNOWLEDGED, A.RESOLVE): S.RESOLVED,
    }


@pytest.mark.parametrize(("transition", "target"), LEGAL, ids=lambda v: str(v))
def test_every_legal_transition_reaches_its_target_and_is_audited(transition, target):
    status, action = transition
    before = in_status(status)
    after = apply(
        before, action, t=T0 + 30, actor=actor_for(action), note="why", **legal_kwargs(action)
    )
    assert after.status is target
    assert after.updated_t == T0 + 30
    assert after.audit[:-1] == before.audit
    last = after.audit[-1]
    assert (last.t, last.action, last.actor, last.note) == (
        T0 + 30,
        action.value,
        actor_for(action),
        "why",
    )


@pytest.mark.parametrize(("status", "action"), ILLEGAL, ids=lambda v: str(v))
def test_every_illegal_transition_is_refused_naming_state_and_action(status, action):
    incident = in_status(status)
    with pytest.raises(IllegalIncidentTransition) as refused:
        apply(incident, action, t=T0 + 30, actor=actor_for(action), **legal_kwargs(action))
    message = str(refused.value)
    assert f"incident inc-1 is {status.value}" in message
    assert repr(action.value) in message
    assert (refused.value.status, refused.value.action) == (status, action)


def test_refusal_lists_what_is_allowed_or_says_it_is_closed():
    with pytest.raises(
        IllegalIncidentTransition, match=r"'cancel' is not allowed \(allowed: resolve\)"
    ):
        apply(in_status(S.ACKNOWLEDGED), A.CANCEL, t=T0 + 6, actor=TECH.actor)
    with pytest.raises(IllegalIncidentTransition, match="nothing, it is closed"):
        apply(in_status(S.RESOLVED), A.ACK, t=T0 + 6, actor=OPERATOR)


def test_raise_is_only_ever_the_first_audit_entry_never_a_transition():
    with pytest.raises(IllegalIncidentTransition, match="is open: 'raise' is not allowed"):
        apply(new(), A.RAISE, t=T0 + 1, actor=TECH.actor)


def test_a_second_acknowledgement_is_refused_so_two_operators_learn_who_was_first():
    incident = apply(new(), A.ACK, t=T0 + 3, actor="operator:op-1")
    with pytest.raises(IllegalIncidentTransition, match="is acknowledged: 'ack'"):
        apply(incident, A.ACK, t=T0 + 4, actor="operator:op-2")


# -- the audit trail ------------------------------------------------------------------------


def test_audit_trail_records_actor_time_and_note_of_every_step():
    incident = new()
    incident = apply(incident, A.ACK, t=T0 + 12, actor="operator:ana", note="calling him")
    incident = apply(
        incident, A.RESOLVE, t=T0 + 95, actor="operator:ben", note="he is fine", outcome="safe"
    )
    assert [(e.t, e.action, e.actor, e.note) for e in incident.audit] == [
        (T0, "raise", "technician:tech-1", "help"),
        (T0 + 12, "ack", "operator:ana", "calling him"),
        (T0 + 95, "resolve", "operator:ben", "he is fine"),
    ]
    assert incident.audit[-1].outcome is Outcome.SAFE


def test_transitions_return_new_incidents_and_leave_the_old_one_alone():
    before = new()
    after = apply(before, A.ACK, t=T0 + 1, actor=OPERATOR)
    assert before.status is S.OPEN and len(before.audit) == 1
    assert after is not before and acknowledged(after) and is_open(after)


# -- resolving ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.OPEN, S.ACKNOWLEDGED])
def test_resolve_records_the_outcome_and_closes(status):
    incident = apply(
        in_status(status), A.RESOLVE, t=T0 + 40, actor=OPERATOR, outcome=Outcome.HELP_DISPATCHED
    )
    assert incident.status is S.RESOLVED and incident.outcome is Outcome.HELP_DISPATCHED
    assert not is_open(incident) and not acknowledged(incident)


def test_resolve_without_an_outcome_is_refused_and_lists_the_outcomes():
    with pytest.raises(
        IllegalIncidentTransition, match="resolve needs an outcome: safe, false_alarm"
    ):
        apply(in_status(S.ACKNOWLEDGED), A.RESOLVE, t=T0 + 40, actor=OPERATOR)


def test_resolve_with_an_unknown_outcome_is_refused():
    with pytest.raises(IllegalIncidentTransition, match="unknown outcome 'fine'"):
        apply(new(), A.RESOLVE, t=T0 + 40, actor=OPERATOR, outcome="fine")


def test_outcome_as_wire_string_is_accepted():
    incident = apply(new(), A.RESOLVE, t=T0 + 40, actor=OPERATOR, outcome="false_alarm")
    assert incident.outcome is Outcome.FALSE_ALARM


def test_an_outcome_on_anything_but_resolve_is_refused():
    with pytest.raises(IllegalIncidentTransition, match="only given when resolving"):
        apply(new(), A.ACK, t=T0 + 1, actor=OPERATOR, outcome=Outcome.SAFE)


# -- cancelling -----------------------------------------------------------------------------


def test_reporter_may_cancel_within_the_grace_period():
    incident = apply(
        new(), A.CANCEL, t=T0 + 60, actor="technician:tech-1", note="pressed by mistake"
    )
    assert incident.status is S.CANCELLED and not is_open(incident)
    assert incident.audit[-1] == AuditEntry(
        t=T0 + 60, action="cancel", actor="technician:tech-1", note="pressed by mistake"
    )


def test_cancel_after_the_grace_period_is_refused():
    with pytest.raises(IllegalIncidentTransition, match=r"is open: 'cancel' .*60 s grace period"):
        apply(new(), A.CANCEL, t=T0 + 60.5, actor=TECH.actor)


def test_grace_period_is_configurable():
    assert (
        apply(new(), A.CANCEL, t=T0 + 100, actor=TECH.actor, cancel_grace_s=120).status
        is S.CANCELLED
    )
    with pytest.raises(IllegalIncidentTransition, match="grace period"):
        apply(new(), A.CANCEL, t=T0 + 11, actor=TECH.actor, cancel_grace_s=10)


@pytest.mark.parametrize("actor", ["operator:op-1", "customer:tech-1", "technician:tech-2"])
def test_cancel_by_anyone_but_the_reporter_is_refused(actor):
    with pytest.raises(IllegalIncidentTransition, match="only its reporter technician:tech-1 may"):
        apply(new(), A.CANCEL, t=T0 + 1, actor=actor)


def test_reporter_cannot_cancel_once_an_operator_acknowledged():
    with pytest.raises(IllegalIncidentTransition, match="is acknowledged: 'cancel' is not allowed"):
        apply(in_status(S.ACKNOWLEDGED), A.CANCEL, t=T0 + 6, actor=TECH.actor)


def test_customer_reporter_cancels_as_customer():
    customer = Reporter(sub="c1", role="customer")
    incident = new(reporter=customer)
    assert incident.audit[0].actor == "customer:c1"
    assert apply(incident, A.CANCEL, t=T0 + 2, actor="customer:c1").status is S.CANCELLED


# -- escalate as a transition (policy in alerts/escalation.py) ------------------------------


def test_escalate_records_the_step_once_and_keeps_the_incident_open():
    incident = apply(new(), A.ESCALATE, t=T0 + 30, actor="system:escalation", step="realert")
    assert incident.status is S.OPEN and incident.escalations == ("realert",)
    with pytest.raises(IllegalIncidentTransition, match="step 'realert' was already done"):
        apply(incident, A.ESCALATE, t=T0 + 31, actor="system:escalation", step="realert")


def test_escalate_needs_a_step_and_only_escalate_takes_one():
    with pytest.raises(IllegalIncidentTransition, match="needs the step name"):
        apply(new(), A.ESCALATE, t=T0 + 30, actor="system:escalation")
    with pytest.raises(IllegalIncidentTransition, match="only given when escalating"):
        apply(new(), A.ACK, t=T0 + 30, actor=OPERATOR, step="realert")


# -- the trail ------------------------------------------------------------------------------


def point(t: float) -> TrailPoint:
    return TrailPoint(t=t, lat=52.5 + t / 1e6, lon=13.4, acc=5.0)


@pytest.mark.parametrize("status", [S.OPEN, S.ACKNOWLEDGED])
def test_trail_grows_while_the_incident_is_open(status):
    incident = in_status(status)
    for t in (T0 + 1, T0 + 2, T0 + 3):
        incident = add_trail_point(incident, point(t))
    assert [p.t for p in incident.trail] == [T0 + 1, T0 + 2, T0 + 3]


@pytest.mark.parametrize("status", [S.RESOLVED, S.CANCELLED])
def test_trail_ignores_fixes_once_closed(status):
    incident = in_status(status)
    assert add_trail_point(incident, point(T0 + 10)) is incident


def test_trail_ignores_out_of_order_and_repeated_fixes():
    incident = add_trail_point(new(), point(T0 + 5))
    assert add_trail_point(incident, point(T0 + 4)) is incident
    assert add_trail_point(incident, point(T0 + 5)) is incident


def test_trail_keeps_only_the_newest_points():
    incident = new()
    for t in range(10):
        incident = add_trail_point(incident, point(T0 + t), max_points=4)
    assert [p.t for p in incident.trail] == [T0 + 6, T0 + 7, T0 + 8, T0 + 9]


def test_trail_does_not_touch_the_audit_or_updated_time():
    incident = add_trail_point(new(), point(T0 + 5))
    assert incident.updated_t == T0 and len(incident.audit) == 1


# -- deliveries -----------------------------------------------------------------------------


def test_deliveries_are_recorded_in_order_even_after_the_incident_closed():
    ok = Delivery(t=T0 + 1, channel="fcm", target="tok-a", step="raise", attempt=1, ok=True)
    failed = Delivery(
        t=T0 + 70,
        channel="webhook",
        target="https://sup.example/hook",
        step="supervisor",
        attempt=5,
        ok=False,
        status=503,
        error="unavailable",
        dead_letter=True,
    )
    incident = record_delivery(new(), ok)
    incident = apply(incident, A.RESOLVE, t=T0 + 60, actor=OPERATOR, outcome=Outcome.SAFE)
    incident = record_delivery(incident, failed)
    assert incident.deliveries == (ok, failed)
