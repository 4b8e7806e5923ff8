"""The booking lifecycle core: pure, synchronous, time passed in."""

import pytest

from realtime.booking import (
    ACTIVE_STATUSES,
    TRANSITIONS,
    BookingEvent,
    BookingStatus,
    Destination,
    IllegalTransition,
    apply,
    create,
)

S, E = BookingStatus, BookingEvent
HOME = Destination(lat=52.52, lon=13.405)


def new(technician_id=None, t=1000.0):
    return create(
        booking_id="b1",
        customer_id="c1",
        destination=HOME,
        t=t,
        actor="platform:platform",
        technician_id=technician_id,
    )


def test_new_booking_without_technician_is_requested_with_a_creation_record():
    booking, events = new()
    assert booking.status is S.REQUESTED
    assert [(e.event, e.from_status, e.to_status) for e in events] == [
        (E.CREATE, None, S.REQUESTED)
    ]


def test_new_booking_with_technician_is_assigned_and_audited_twice():
    booking, events = new("tech-1")
    assert booking.status is S.ASSIGNED and booking.technician_id == "tech-1"
    assert [e.event for e in events] == [E.CREATE, E.ASSIGN]
    assert events[1].technician_id == "tech-1"


def test_full_visit_records_arrival_departure_and_real_duration():
    booking, _ = new("tech-1")
    steps = [(E.EN_ROUTE, 1100.0), (E.APPROACH, 1500.0), (E.CHECK_IN, 1600.0)]
    steps += [(E.START_SERVICE, 1650.0), (E.CHECK_OUT, 5200.0)]
    trail = []
    for event, t in steps:
        booking, record = apply(booking, event, t=t, actor="hub", cause="test")
        trail.append((record.from_status, record.to_status, record.t, record.cause))
    assert booking.status is S.COMPLETED
    assert booking.arrived_t == 1600.0 and booking.departed_t == 5200.0
    assert booking.service_duration_s == 3600.0
    assert trail[0] == (S.ASSIGNED, S.EN_ROUTE, 1100.0, "test")
    assert trail[-1][:2] == (S.IN_SERVICE, S.COMPLETED)


def test_check_in_straight_from_en_route_skips_arriving():
    booking, _ = new("tech-1")
    booking, _ = apply(booking, E.EN_ROUTE, t=1, actor="a")
    booking, _ = apply(booking, E.CHECK_IN, t=2, actor="a")
    assert booking.status is S.ARRIVED


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (S.REQUESTED, E.EN_ROUTE),
        (S.REQUESTED, E.CHECK_IN),
        (S.ASSIGNED, E.CHECK_OUT),
        (S.EN_ROUTE, E.ASSIGN),
        (S.ARRIVED, E.CHECK_OUT),
        (S.COMPLETED, E.CANCEL),
        (S.CANCELLED, E.ASSIGN),
        (S.CANCELLED, E.CANCEL),
    ],
)
def test_illegal_transition_names_the_state_and_the_event(status, event):
    booking, _ = new("tech-1")
    import msgspec

    booking = msgspec.structs.replace(booking, status=status)
    with pytest.raises(IllegalTransition) as caught:
        apply(booking, event, t=5, actor="a", technician_id="t2")
    assert status.value in str(caught.value) and event.value in str(caught.value)
    assert caught.value.status is status and caught.value.event is event


@pytest.mark.parametrize("status", sorted(ACTIVE_STATUSES | {S.REQUESTED}))
def test_cancel_is_allowed_from_every_state_before_completion(status):
    assert TRANSITIONS[(status, E.CANCEL)] is S.CANCELLED


def test_final_states_have_no_way_out():
    for status in (S.COMPLETED, S.CANCELLED):
        assert not [key for key in TRANSITIONS if key[0] is status]


def test_reassignment_before_departure_changes_the_technician():
    booking, _ = new("tech-1")
    booking, record = apply(booking, E.ASSIGN, t=2, actor="a", technician_id="tech-2")
    assert booking.technician_id == "tech-2" and record.to_status is S.ASSIGNED


def test_assign_needs_a_technician():
    booking, _ = new()
    with pytest.raises(ValueError):
        apply(booking, E.ASSIGN, t=2, actor="a")


def test_apply_does_not_mutate_the_input():
    booking, _ = new("tech-1")
    after, _ = apply(booking, E.EN_ROUTE, t=2, actor="a")
    assert booking.status is S.ASSIGNED and after.status is S.EN_ROUTE
    assert after.updated_t == 2 and booking.updated_t == 1000.0


def test_active_means_position_visible():
    booking, _ = new()
    assert not booking.active
    booking, _ = apply(booking, E.ASSIGN, t=1, actor="a", technician_id="x")
    assert booking.active
    booking, _ = apply(booking, E.CANCEL, t=2, actor="a")
    assert not booking.active and booking.final
