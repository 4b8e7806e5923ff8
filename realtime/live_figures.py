"""The scrape-time gauges' figures, from the hub's mirrors. Pure: state and time in.

Prometheus scrapes every few seconds; the fixes arrive hundreds of times a second. Counting
technicians or bookings as they change would put work on every transition and every fix;
reading the mirrors the hub keeps anyway (its open bookings, its open incidents), once per
scrape, costs one pass over them and nothing in between.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from alerts.incident import Incident, IncidentStatus
from realtime import booking as core
from realtime.booking import Booking, BookingStatus
from realtime.metrics import LiveFigures

S = BookingStatus
EN_ROUTE = frozenset({S.EN_ROUTE, S.ARRIVING})
ON_SITE = frozenset({S.ARRIVED, S.IN_SERVICE})
# Kinds always shown, at zero when none is waiting: an alert on "no SOS waiting over 30 s"
# then reads a series that exists, rather than one that appears only when it fires.
ALWAYS_SHOWN_KINDS = ("sos",)


def live_figures(
    *,
    bookings: Iterable[Booking],
    incidents: Iterable[Incident],
    technicians_connected: int,
    now: float,
    ready_checks: Mapping[str, bool],
    bus_dropped: int = 0,
) -> LiveFigures:
    """The figures at ``now`` (Unix seconds) from the open bookings and open incidents."""
    by_status: Counter[str] = Counter()
    by_technician: defaultdict[str, list[Booking]] = defaultdict(list)
    for booking in bookings:
        by_status[booking.status.value] += 1
        if booking.technician_id is not None:
            by_technician[booking.technician_id].append(booking)
    en_route = on_site = 0
    for own in by_technician.values():
        # A technician is on one visit at most; their other open bookings wait (assigned).
        visit = core.current_visit(own)
        if visit is None:
            continue
        if visit.status in EN_ROUTE:
            en_route += 1
        elif visit.status in ON_SITE:
            on_site += 1
    waiting: dict[str, int] = dict.fromkeys(ALWAYS_SHOWN_KINDS, 0)
    oldest: dict[str, float] = dict.fromkeys(ALWAYS_SHOWN_KINDS, 0.0)
    for incident in incidents:
        if incident.status is not IncidentStatus.OPEN:
            continue  # acknowledged: answered, whatever comes next
        waiting[incident.kind] = waiting.get(incident.kind, 0) + 1
        # A clock step back must not show a negative age.
        age = max(0.0, now - incident.created_t)
        oldest[incident.kind] = max(oldest.get(incident.kind, 0.0), age)
    return LiveFigures(
        technicians_connected=technicians_connected,
        technicians_en_route=en_route,
        technicians_on_site=on_site,
        bookings_open=dict(by_status),
        incidents_unacknowledged=waiting,
        oldest_unacknowledged_s=oldest,
        ready_checks=dict(ready_checks),
        bus_dropped=bus_dropped,
    )
