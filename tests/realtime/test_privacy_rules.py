"""The pure privacy rules (``realtime/privacy.py``): time passed in, no hub."""

from __future__ import annotations

import pytest

from alerts import incident as incident_core
from alerts.incident import IncidentAction, Outcome, Reporter
from realtime import booking as booking_core
from realtime.booking import BookingEvent, Destination
from realtime.privacy import (
    Retention,
    WindowRefused,
    booking_due,
    cutoffs,
    redact_booking,
    track_window,
)

T0 = 1_700_000_000.0
DAY = 86400.0
WINDOW = {"default_s": DAY, "max_s": 7 * DAY, "future_skew_s": 120.0, "margin_s": 3600.0}


def cancelled(t: float):
    booking, _ = booking_core.create(
        booking_id="b1",
        customer_id="cust-1",
        destination=Destination(52.520008, 13.404954),
        t=T0,
        actor="platform",
        fence={"type": "Polygon", "coordinates": []},
    )
    booking, _ = booking_core.apply(booking, BookingEvent.CANCEL, t=t, actor="platform")
    return booking


def test_cutoffs_are_now_minus_each_retention() -> None:
    due = cutoffs(Retention(history_s=10, incidents_s=20, booking_personal_s=30), now=100)
    assert (due.history, due.incidents, due.bookings) == (90, 80, 70)


def test_a_closed_booking_is_due_once_strictly_older_than_the_cutoff() -> None:
    booking = cancelled(T0 + 5)
    assert not booking_due(booking, T0 + 5)
    assert booking_due(booking, T0 + 5.001)
    active, _ = booking_core.create(
        booking_id="b2", customer_id="c", destination=Destination(1, 2), t=T0, actor="p"
    )
    assert not booking_due(active, T0 + 100 * DAY)  # open: never due


def test_redaction_keeps_ids_status_and_times_and_is_idempotent() -> None:
    booking = cancelled(T0 + 5)
    redacted = redact_booking(booking, T0 + DAY)
    assert redacted.destination == Destination(52.52, 13.40) and redacted.fence is None
    assert (redacted.id, redacted.status, redacted.customer_id) == ("b1", "cancelled", "cust-1")
    assert (redacted.created_t, redacted.updated_t) == (booking.created_t, booking.updated_t)
    assert redact_booking(redacted, T0 + 2 * DAY) is redacted
    assert not booking_due(redacted, T0 + 100 * DAY)


def test_the_track_window_defaults_to_a_day_before_to() -> None:
    window = track_window(now=T0, t_from=None, t_to=None, **WINDOW)
    assert (window.t_from, window.t_to) == (T0 + 120 - DAY, T0 + 120)
    window = track_window(now=T0, t_from=None, t_to=T0 - 50, **WINDOW)
    assert (window.t_from, window.t_to) == (T0 - 50 - DAY, T0 - 50)


def test_the_track_window_is_capped_unless_an_incident_covers_it() -> None:
    assert track_window(now=T0, t_from=T0 - 7 * DAY, t_to=T0, **WINDOW).incident_id is None
    with pytest.raises(WindowRefused):
        track_window(now=T0, t_from=T0 - 7 * DAY - 1, t_to=T0, **WINDOW)
    with pytest.raises(WindowRefused):
        track_window(now=T0, t_from=T0, t_to=T0 - 1, **WINDOW)
    raised = incident_core.raise_incident(
        incident_id="inc-1",
        client_id="c",
        kind="sos",
        reporter=Reporter(sub="tech-1", role="technician"),
        t=T0 - 9 * DAY,
        technician_id="tech-1",
    )
    window = track_window(
        now=T0, t_from=T0 - 9 * DAY - 3600, t_to=T0 + 3600, incidents=[raised], **WINDOW
    )
    assert window.incident_id == "inc-1"
    with pytest.raises(WindowRefused):  # beyond the margin
        track_window(now=T0, t_from=T0 - 9 * DAY - 3601, t_to=T0, incidents=[raised], **WINDOW)
    resolved = incident_core.apply(
        raised, IncidentAction.RESOLVE, t=T0 - DAY, actor="operator:o", outcome=Outcome.SAFE
    )
    with pytest.raises(WindowRefused):  # closed a day ago: its window ends then (+ margin)
        track_window(now=T0, t_from=T0 - 9 * DAY, t_to=T0, incidents=[resolved], **WINDOW)
    assert (
        track_window(
            now=T0, t_from=T0 - 9 * DAY, t_to=T0 - DAY + 3600, incidents=[resolved], **WINDOW
        ).incident_id
        == "inc-1"
    )
