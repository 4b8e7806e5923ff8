"""The scrape-time gauges' figures from open bookings and incidents (realtime/live_figures.py)."""

from __future__ import annotations

from prometheus_client import generate_latest

from alerts import incident as core
from alerts.incident import IncidentAction, Reporter
from realtime.booking import Booking, BookingStatus, Destination
from realtime.live_figures import live_figures
from realtime.metrics import LiveFigures, Metrics

S = BookingStatus
READY = {"hub": True, "store": True}


def booking(booking_id: str, status: BookingStatus, technician: str | None) -> Booking:
    return Booking(
        id=booking_id,
        customer_id="c",
        destination=Destination(lat=52.5, lon=13.4),
        status=status,
        created_t=0.0,
        updated_t=0.0,
        technician_id=technician,
    )


def incident(incident_id: str, kind: str, t: float):
    return core.raise_incident(
        incident_id=incident_id,
        client_id=incident_id,
        kind=kind,
        reporter=Reporter(sub="t1", role="technician"),
        t=t,
    )


def test_nothing_open_shows_zeros_and_an_sos_series() -> None:
    figures = live_figures(
        bookings=[], incidents=[], technicians_connected=0, now=100.0, ready_checks=READY
    )
    assert figures == LiveFigures(
        incidents_unacknowledged={"sos": 0},
        oldest_unacknowledged_s={"sos": 0.0},
        ready_checks=READY,
    )


def test_technicians_by_their_current_visit_and_bookings_by_status() -> None:
    bookings = [
        booking("a1", S.EN_ROUTE, "t1"),
        booking("a2", S.ASSIGNED, "t1"),  # t1's next booking: t1 counts once, en route
        booking("b1", S.ARRIVING, "t2"),
        booking("c1", S.IN_SERVICE, "t3"),
        booking("d1", S.ARRIVED, "t4"),
        booking("e1", S.ASSIGNED, "t5"),  # assigned only: not on a visit
    ]
    figures = live_figures(
        bookings=bookings, incidents=[], technicians_connected=3, now=0.0, ready_checks={}
    )
    assert (figures.technicians_en_route, figures.technicians_on_site) == (2, 2)
    assert figures.technicians_connected == 3
    assert figures.bookings_open == {
        "en_route": 1,
        "assigned": 2,
        "arriving": 1,
        "in_service": 1,
        "arrived": 1,
    }


def test_unanswered_incidents_by_kind_with_the_oldest_age() -> None:
    sos_old, sos_new = incident("i1", "sos", 100.0), incident("i2", "sos", 130.0)
    overdue = incident("i3", "overdue_visit", 120.0)
    acked = core.apply(incident("i4", "sos", 10.0), IncidentAction.ACK, t=20.0, actor="op")
    future = incident("i5", "signal_lost", 200.0)  # a clock step back: age 0, not -50
    figures = live_figures(
        bookings=[],
        incidents=[sos_old, sos_new, overdue, acked, future],
        technicians_connected=0,
        now=150.0,
        ready_checks={},
    )
    assert figures.incidents_unacknowledged == {"sos": 2, "overdue_visit": 1, "signal_lost": 1}
    # 150 - 100 = 50 s for the older SOS (the acknowledged one, older still, is answered).
    assert figures.oldest_unacknowledged_s == {
        "sos": 50.0,
        "overdue_visit": 30.0,
        "signal_lost": 0.0,
    }


def test_the_collector_exports_the_figures_and_survives_a_broken_source() -> None:
    metrics = Metrics()
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE doorstep_ready gauge" in text and "\ndoorstep_ready " not in text
    metrics.read_live(
        lambda: LiveFigures(
            technicians_connected=2,
            bookings_open={"assigned": 3},
            ready_checks={"hub": True, "store": False},
            bus_dropped=7,
        )
    )
    text = generate_latest(metrics.registry).decode()
    assert "doorstep_technicians_connected 2.0" in text
    assert 'doorstep_bookings_open{status="assigned"} 3.0' in text
    assert "doorstep_ready 0.0" in text  # one check failing
    assert 'doorstep_ready_check{check="store"} 0.0' in text
    assert "doorstep_bus_dropped_total 7.0" in text

    def broken() -> LiveFigures:
        raise RuntimeError("mirror gone")

    metrics.read_live(broken)
    text = generate_latest(metrics.registry).decode()
    assert "doorstep_frames_in_total" in text  # the rest of /metrics still answers
    assert "\ndoorstep_ready " not in text
