"""The audited state machine shared by the booking, incident and safety-alert cores.

A toy lifecycle (a door) pins the helper's contract; hypothesis then drives the three real
cores with arbitrary action sequences: they never leave their table, every accepted step
writes exactly one audit entry stamped with the caller's time, refused steps change nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from enum import StrEnum
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import incident as incident_core
from alerts import safety_alert as alert_core
from alerts.incident import IllegalIncidentTransition, IncidentAction, Outcome, Reporter
from alerts.lifecycle import Lifecycle, Move, allowed_actions
from alerts.safety_alert import AlertAction, AlertKind, AlertStatus, IllegalAlertTransition
from realtime import booking as booking_core
from realtime.booking import BookingEvent, Destination, IllegalTransition

# --- a toy core: a door -----------------------------------------------------------------


class DoorState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    LOCKED = "locked"


class DoorAction(StrEnum):
    INSTALL = "install"  # the creation entry; not in the table
    OPEN = "open"
    CLOSE = "close"
    LOCK = "lock"
    UNLOCK = "unlock"


D, DA = DoorState, DoorAction
DOOR_TABLE = {
    (D.CLOSED, DA.OPEN): D.OPEN,
    (D.OPEN, DA.CLOSE): D.CLOSED,
    (D.CLOSED, DA.LOCK): D.LOCKED,
    (D.LOCKED, DA.UNLOCK): D.CLOSED,
}


class DoorRefused(Exception):
    pass


@dataclass(frozen=True)
class Door:
    id: str
    state: DoorState
    changed_t: float


@dataclass(frozen=True)
class DoorEntry:
    t: float
    action: str
    source: DoorState | None
    target: DoorState
    actor: str


DOOR: Lifecycle[Door, DoorState, DoorAction] = Lifecycle(
    DOOR_TABLE,
    initial=D.CLOSED,
    state_of=lambda door: door.state,
    refuse=lambda door, action: DoorRefused(f"door {door.id} is {door.state}: {action} refused"),
)


def door_entry(actor: str):
    def audit(door: Door, move: Move[DoorState, DoorAction]) -> DoorEntry:
        return DoorEntry(
            t=move.t, action=move.action.value, source=move.source, target=move.target, actor=actor
        )

    return audit


def advance_door(door: Door, move: Move[DoorState, DoorAction]) -> Door:
    return replace(door, state=move.target, changed_t=move.t)


def new_door(t: float = 10.0) -> tuple[Door, DoorEntry]:
    return DOOR.begin(
        DA.INSTALL,
        t=t,
        build=lambda move: Door(id="d1", state=move.target, changed_t=move.t),
        audit=door_entry("fitter"),
    )


def test_begin_builds_the_initial_state_with_its_creation_entry() -> None:
    door, entry = new_door(t=10.0)
    assert door == Door(id="d1", state=D.CLOSED, changed_t=10.0)
    assert entry == DoorEntry(
        t=10.0, action="install", source=None, target=D.CLOSED, actor="fitter"
    )


def test_step_follows_the_table_and_stamps_the_callers_time() -> None:
    door, _ = new_door()
    opened, entry = DOOR.step(door, DA.OPEN, t=42.5, advance=advance_door, audit=door_entry("me"))
    assert opened == Door(id="d1", state=D.OPEN, changed_t=42.5)
    assert entry == DoorEntry(t=42.5, action="open", source=D.CLOSED, target=D.OPEN, actor="me")
    assert door.state is D.CLOSED  # the old record is untouched


def test_a_step_off_the_table_raises_the_cores_exception_before_any_callback() -> None:
    door, _ = new_door()
    called: list[str] = []

    def advance(current: Door, move: Move[DoorState, DoorAction]) -> Door:
        called.append("advance")
        return current

    def audit(current: Door, move: Move[DoorState, DoorAction]) -> DoorEntry:
        called.append("audit")
        raise AssertionError("not reached")

    with pytest.raises(DoorRefused, match="door d1 is closed: unlock refused"):
        DOOR.step(door, DA.UNLOCK, t=1.0, advance=advance, audit=audit)
    assert called == []


def test_a_guard_raising_in_advance_refuses_without_an_entry() -> None:
    door, _ = new_door()

    def guarded(current: Door, move: Move[DoorState, DoorAction]) -> Door:
        raise DoorRefused("the key is missing")

    def audit(current: Door, move: Move[DoorState, DoorAction]) -> DoorEntry:
        raise AssertionError("no entry for a refused step")

    with pytest.raises(DoorRefused, match="the key is missing"):
        DOOR.step(door, DA.LOCK, t=1.0, advance=guarded, audit=audit)


def test_allowed_lists_the_action_values_sorted() -> None:
    assert DOOR.allowed(D.CLOSED) == ["lock", "open"]
    assert DOOR.allowed(D.LOCKED) == ["unlock"]
    assert allowed_actions(DOOR_TABLE, D.OPEN) == ["close"]
    assert DOOR.next_state(D.OPEN, DA.LOCK) is None
    assert DOOR.next_state(D.OPEN, DA.CLOSE) is D.CLOSED


def test_the_cores_read_no_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_clock() -> float:
        raise AssertionError("a pure core read the clock")

    for name in ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns"):
        monkeypatch.setattr(time, name, no_clock)
    booking, _ = booking_core.create(
        booking_id="b1",
        customer_id="c1",
        destination=Destination(lat=52.5, lon=13.4),
        t=1.0,
        actor="platform",
        technician_id="t1",
    )
    booking_core.apply(booking, BookingEvent.EN_ROUTE, t=2.0, actor="technician:t1")
    incident = incident_core.raise_incident(
        incident_id="i1", client_id="u1", kind="sos", reporter=REPORTER, t=1.0
    )
    incident_core.apply(incident, IncidentAction.ACK, t=2.0, actor="operator:o1")
    alert, _ = alert_core.open_alert(**ALERT_FIELDS, t=1.0)
    alert_core.acknowledge(alert, t=2.0, actor="operator:o1")


# --- properties of the three real cores ----------------------------------------------------

# Gaps between steps: the time always comes from the caller, never from a clock.
gaps = st.floats(min_value=0.0, max_value=120.0, allow_nan=False)
# No per-example deadline: these are pure and fast, but the CI machine is shared and a
# scheduling hiccup must not fail a property.
pure = settings(deadline=None)


@pure
@given(st.lists(st.tuples(st.sampled_from(DoorAction), gaps), max_size=30))
def test_door_never_leaves_its_table(steps: list[tuple[DoorAction, float]]) -> None:
    door, entry = new_door(t=0.0)
    trail = [entry]
    accepted = 0
    t = 0.0
    for action, gap in steps:
        t += gap
        before = door
        try:
            door, entry = DOOR.step(door, action, t=t, advance=advance_door, audit=door_entry("x"))
        except DoorRefused:
            assert (before.state, action) not in DOOR_TABLE
            assert door is before
            continue
        assert door.state is DOOR_TABLE[(before.state, action)]
        accepted += 1
        trail.append(entry)
        assert (entry.source, entry.target, entry.t) == (before.state, door.state, t)
    assert len(trail) == 1 + accepted  # one creation entry, then exactly one per accepted step
    assert all(a.target is b.source for a, b in pairwise(trail))


@pure
@given(st.lists(st.tuples(st.sampled_from(BookingEvent), gaps), max_size=30))
def test_a_booking_never_leaves_its_table(steps: list[tuple[BookingEvent, float]]) -> None:
    booking, trail = booking_core.create(
        booking_id="b1",
        customer_id="c1",
        destination=Destination(lat=52.5, lon=13.4),
        t=0.0,
        actor="platform",
    )
    t = 0.0
    for event, gap in steps:
        t += gap
        before, audited = booking, len(trail)
        try:
            booking, record = booking_core.apply(
                booking, event, t=t, actor="platform", technician_id="t1"
            )
        except IllegalTransition as exc:
            assert (before.status, event) not in booking_core.TRANSITIONS
            assert (exc.status, exc.event) == (before.status, event)
            assert booking is before and len(trail) == audited
            continue
        trail.append(record)
        assert booking.status is booking_core.TRANSITIONS[(before.status, event)]
        assert (record.from_status, record.to_status, record.event) == (
            before.status,
            booking.status,
            event,
        )
        assert record.t == booking.updated_t == t
    assert trail[0].event is BookingEvent.CREATE and trail[0].from_status is None
    assert all(a.to_status is b.from_status for a, b in pairwise(trail))


REPORTER = Reporter(sub="t1", role="technician")
OPERATOR = "operator:o1"
incident_steps = st.tuples(
    st.sampled_from(IncidentAction),
    gaps,
    st.sampled_from([REPORTER.actor, OPERATOR]),
    st.sampled_from([None, Outcome.SAFE, "not-an-outcome"]),
    st.sampled_from([None, "contacts", "police"]),
)


@pure
@given(st.lists(incident_steps, max_size=30))
def test_an_incident_never_leaves_its_table(
    steps: list[tuple[IncidentAction, float, str, str | None, str | None]],
) -> None:
    incident = incident_core.raise_incident(
        incident_id="i1", client_id="u1", kind="sos", reporter=REPORTER, t=0.0
    )
    assert [e.action for e in incident.audit] == ["raise"]
    t = 0.0
    for action, gap, actor, outcome, step in steps:
        t += gap
        before = incident
        try:
            incident = incident_core.apply(
                incident, action, t=t, actor=actor, outcome=outcome, step=step
            )
        except IllegalIncidentTransition as exc:
            assert exc.status is before.status and exc.action == action
            assert incident is before
            continue
        assert incident.status is incident_core.TRANSITIONS[(before.status, action)]
        assert incident.audit[:-1] == before.audit  # exactly one entry more
        entry = incident.audit[-1]
        assert (entry.t, entry.action, entry.actor) == (t, action.value, actor)
        assert incident.updated_t == t
        assert (entry.outcome is not None) == (action is IncidentAction.RESOLVE)


ALERT_FIELDS = {
    "alert_id": "a1",
    "kind": AlertKind.SIGNAL_LOST,
    "technician_id": "t1",
    "booking_id": "b1",
    "message": "no fix for 5 min",
    "actor": "system:watchdog",
}


@pure
@given(st.lists(st.tuples(st.sampled_from(AlertAction), gaps), max_size=10))
def test_a_safety_alert_never_leaves_its_table(steps: list[tuple[AlertAction, float]]) -> None:
    alert, first = alert_core.open_alert(**ALERT_FIELDS, t=0.0)
    assert (alert.status, first.action, first.note) == (AlertStatus.OPEN, "raise", alert.message)
    t = 0.0
    for action, gap in steps:
        t += gap
        before = alert
        if action is AlertAction.RAISE:  # not an action on an existing alert
            assert alert_core.LIFECYCLE.next_state(alert.status, action) is None
            continue
        try:
            alert, entry = alert_core.acknowledge(alert, t=t, actor=OPERATOR, note="seen")
        except IllegalAlertTransition as exc:
            assert before.status is AlertStatus.ACKNOWLEDGED
            assert f"acknowledged by {OPERATOR}" in str(exc)
            assert alert is before
            continue
        assert alert.status is alert_core.TRANSITIONS[(before.status, action)]
        assert (entry.t, entry.action, alert.acked_t, alert.acked_by) == (t, "ack", t, OPERATOR)
