"""Privacy rules: how long each kind of data is kept, what a redaction keeps, how far back an
operator may read a track, and the access audit entry.

Pure: no I/O and no clock. Times are passed in, so the retention job, the HTTP routes, both
backends and the tests apply the same rules (docs/privacy.md says them in words).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from alerts.incident import Incident
from realtime.booking import FINAL_STATUSES, Booking, Destination

# A redacted destination keeps two decimals (~1.1 km north-south, ~0.7 km east-west at 50 N):
# the neighbourhood, for statistics by area, never the house.
REDACTED_DECIMALS = 2


class AccessEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One audited access to a person's data: who, when, what (never the data itself).

    ``action`` is ``track_read``, ``contacts_read`` or ``erase``; ``subject`` is the id of
    the person the data is about and ``role`` their kind (technician or customer);
    ``detail`` says what exactly (a time range, counts of erased items).
    """

    t: float
    actor: str
    action: str
    subject: str
    role: str
    detail: dict[str, Any] = {}


@dataclass(frozen=True)
class Retention:
    """How long each kind of data is kept (seconds), from the settings."""

    history_s: float  # location history, last positions (store, roster, memory)
    incidents_s: float  # closed incidents with their trails and audit; access audit
    booking_personal_s: float  # personal fields of closed bookings, after they closed


@dataclass(frozen=True)
class Cutoffs:
    """Data older than these times (hub clock) is due for purging at one ``now``."""

    history: float
    incidents: float
    bookings: float


def cutoffs(retention: Retention, now: float) -> Cutoffs:
    """What is due at ``now``: everything strictly older than ``now - retention``."""
    return Cutoffs(
        history=now - retention.history_s,
        incidents=now - retention.incidents_s,
        bookings=now - retention.booking_personal_s,
    )


def booking_due(booking: Booking, cutoff: float) -> bool:
    """A closed booking whose personal fields are past retention and still there.

    A booking is closed when it is completed or cancelled; ``updated_t`` is then the time it
    closed (a final booking takes no further transition).
    """
    return (
        booking.status in FINAL_STATUSES
        and booking.redacted_t is None
        and (booking.updated_t < cutoff)
    )


def redact_booking(booking: Booking, t: float) -> Booking:
    """The booking without its personal fields, in place of the original.

    Kept, so audits and statistics still work: id, status, times, technician and customer
    ids, skills, durations. Gone: the exact destination (rounded to the neighbourhood, see
    ``REDACTED_DECIMALS``) and the fence drawn around the home. ``redacted_t`` marks it.
    Idempotent: a redacted booking is returned as it is.
    """
    if booking.redacted_t is not None:
        return booking
    coarse = Destination(
        lat=round(booking.destination.lat, REDACTED_DECIMALS),
        lon=round(booking.destination.lon, REDACTED_DECIMALS),
    )
    return msgspec.structs.replace(booking, destination=coarse, fence=None, redacted_t=t)


def involves(incident: Incident, person_id: str) -> bool:
    """Whether an incident is about this person (reporter, technician or customer)."""
    return person_id in (incident.reporter.sub, incident.technician_id, incident.customer_id)


class WindowRefused(ValueError):
    """A track read asked for more than one request may cover."""


@dataclass(frozen=True)
class TrackWindow:
    t_from: float
    t_to: float
    incident_id: str | None = None  # the incident whose window allowed a longer range


def incident_window(incident: Incident, now: float, margin_s: float) -> tuple[float, float]:
    """The time an incident covers, widened by ``margin_s`` on both sides: from its raise to
    its close (its last update once closed), or to ``now`` while it is open."""
    end = now if incident.is_open else incident.updated_t
    return incident.created_t - margin_s, end + margin_s


def track_window(
    *,
    now: float,
    t_from: float | None,
    t_to: float | None,
    default_s: float,
    max_s: float,
    future_skew_s: float,
    incidents: Iterable[Incident] = (),
    margin_s: float = 0.0,
) -> TrackWindow:
    """The range a track read covers, or ``WindowRefused``.

    Without ``from`` the read covers ``default_s`` before ``to`` (``to`` defaults to now
    plus the clock skew a phone may have). A range longer than ``max_s`` is refused unless
    one incident of the technician covers all of it (its window plus ``margin_s``): that is
    the review of an incident, not browsing a person's movements.
    """
    end = now + future_skew_s if t_to is None else t_to
    start = end - default_s if t_from is None else t_from
    if end < start:
        raise WindowRefused("to is before from")
    if end - start <= max_s:
        return TrackWindow(start, end)
    for incident in incidents:
        low, high = incident_window(incident, now, margin_s)
        if low <= start and end <= high:
            return TrackWindow(start, end, incident.id)
    raise WindowRefused(
        f"a track read covers at most {max_s:g} s ({max_s / 86400:g} days), "
        f"not {end - start:g} s, unless an incident of the technician covers the range"
    )
