"""The pure statistics core (realtime/stats.py): quantiles, targets, the on-time window."""

from __future__ import annotations

import pytest

from alerts.incident import AuditEntry, Incident, IncidentStatus, Reporter
from realtime.booking import Booking, BookingStatus, Destination
from realtime.stats import ON_TIME_VISITS, compute, time_to_ack_s

T0 = 1_700_000_000.0


def booking(n: int, **fields) -> Booking:
    base = {
        "id": f"b-{n:04d}",
        "customer_id": "c",
        "destination": Destination(52.5, 13.4),
        "status": BookingStatus.COMPLETED,
        "created_t": T0,
        "updated_t": T0,
    }
    return Booking(**{**base, **fields})


def incident(n: int, acked_after_s: float | None, **fields) -> Incident:
    audit = [AuditEntry(t=T0, action="raise", actor="technician:t")]
    if acked_after_s is not None:
        audit.append(AuditEntry(t=T0 + acked_after_s, action="ack", actor="operator:o"))
    return Incident(
        id=f"inc-{n}",
        client_id=f"c-{n}",
        kind="sos",
        reporter=Reporter(sub="t", role="technician"),
        status=IncidentStatus.ACKNOWLEDGED if acked_after_s is not None else IncidentStatus.OPEN,
        created_t=T0,
        updated_t=T0,
        audit=tuple(audit),
        **fields,
    )


def figures(bookings=(), incidents=()):
    return compute(bookings, incidents, t_from=T0, t_to=T0 + 86400, city=None)


def test_time_to_ack_is_the_first_ack_or_resolve() -> None:
    assert time_to_ack_s(incident(1, 12.5)) == 12.5
    assert time_to_ack_s(incident(2, None)) is None


def test_quantiles_interpolate_and_targets_count_the_unanswered_against_them() -> None:
    # Acked after 5, 10, 15, 30 s; one never: p50 of the four = 12.5, p90 = 25.5.
    # Within 15 s: 3 of 5 raised = 0.6 (< 0.9); within 20 s: 0.6 (< 0.95).
    raised = [incident(n, w) for n, w in enumerate([5.0, 10.0, 15.0, 30.0, None])]
    sos = figures(incidents=raised).incidents
    assert (sos.raised, sos.acknowledged) == (5, 4)
    assert (sos.ack_p50_s, sos.ack_p90_s) == (12.5, 25.5)
    assert [(t.within_s, t.share, t.met) for t in sos.targets] == [
        (15.0, 0.6, False),
        (20.0, 0.6, False),
    ]
    fast = figures(incidents=[incident(n, 3.0) for n in range(10)]).incidents
    assert [t.met for t in fast.targets] == [True, True]


def test_on_time_rate_is_over_the_most_recent_visits_with_a_window() -> None:
    # 50 old late visits, then ON_TIME_VISITS recent on-time ones: the window holds only
    # the recent ones, so the rate is 1.0; a visit without a window does not count.
    late = [
        booking(n, arrived_t=T0 + n, window_end_t=T0 + n - 1, checked_in_by="hub:arrivals")
        for n in range(50)
    ]
    on_time = [
        booking(
            1000 + n, arrived_t=T0 + 1000 + n, window_end_t=T0 + 5000, checked_in_by="operator:o"
        )
        for n in range(ON_TIME_VISITS)
    ]
    unwindowed = [booking(9999, arrived_t=T0 + 9999, checked_in_by="hub:arrivals")]
    visits = figures(bookings=late + on_time + unwindowed).visits
    assert (visits.on_time_counted, visits.on_time_rate) == (ON_TIME_VISITS, 1.0)
    assert (visits.checked_in, visits.automatic, visits.manual) == (251, 51, 200)


def test_eta_figures_weigh_each_arrival_by_how_many_etas_it_scored() -> None:
    # 3 scored at 10 s MAE (all held), 1 at 50 s (none held): (30 + 50) / 4 = 20 s, 3/4.
    eta = figures(
        bookings=[
            booking(1, eta_scored=3, eta_mae_s=10.0, eta_range_held=1.0),
            booking(2, eta_scored=1, eta_mae_s=50.0, eta_range_held=0.0),
            booking(3),
        ]
    ).eta
    assert (eta.arrivals, eta.scored, eta.mae_s, eta.range_held) == (2, 4, 20.0, 0.75)


def test_nothing_gives_zeros_and_nulls() -> None:
    empty = figures()
    assert empty.bookings == 0 and empty.visits.on_time_rate is None
    assert empty.eta.mae_s is None and empty.incidents.ack_p50_s is None
    assert [t.share for t in empty.incidents.targets] == [None, None]


def test_escalations_are_counted_by_step() -> None:
    raised = [incident(1, None, escalations=("realert", "supervisor")), incident(2, None)]
    assert figures(incidents=raised).incidents.escalations == {"realert": 1, "supervisor": 1}


@pytest.mark.parametrize("actor", ["hub:arrivals", "system:watchdog"])
def test_the_hubs_own_check_ins_are_automatic(actor: str) -> None:
    visits = figures(bookings=[booking(1, arrived_t=T0, checked_in_by=actor)]).visits
    assert (visits.automatic, visits.manual, visits.automatic_share) == (1, 0, 1.0)
