"""The operations figures for a period, from what is stored (``GET /v1/stats``). Pure.

Bookings and incidents of the period in, figures out; no store, no clock. The same figures
the dashboard shows live, for any period and city, so a team can ask "how did last week go"
of the audit trail rather than of a Prometheus that may have been restarted:

- bookings by status, and how the visits went: checked in automatically (the presence
  detector, actor ``hub:…``) or by hand (a person through the API), and on time (checked in
  by the promised window's end) over the most recent ``ON_TIME_VISITS`` visits with a window;
- the ETAs customers were shown, scored at each arrival (``realtime/eta_accuracy.py``, kept
  on the booking): mean absolute error and how often the range held, weighted by how many
  each arrival scored;
- SOS and other incidents: how many, how many acknowledged, time to acknowledge (raise to
  the first ack or resolve) at p50 / p90 and the share within the call-centre targets
  (90 % within 15 s, 95 % within 20 s), and the escalation steps that fired.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import msgspec

from alerts.incident import Incident, IncidentAction
from realtime.booking import Booking

ON_TIME_VISITS = 200
# Emergency call centres aim at 90 % of calls answered within 15 s and 95 % within 20 s.
ACK_TARGETS_S: tuple[tuple[float, float], ...] = ((15.0, 0.90), (20.0, 0.95))
# Actors whose transitions are a person's call (the API); anything else is the hub's own.
PERSON_ROLES = frozenset({"platform", "operator", "technician", "customer"})


class VisitFigures(msgspec.Struct, frozen=True):
    checked_in: int
    automatic: int  # by the presence detector
    manual: int  # by a person through the API
    automatic_share: float | None
    on_time_counted: int  # visits with a window among the last ON_TIME_VISITS
    on_time_rate: float | None


class EtaFigures(msgspec.Struct, frozen=True):
    arrivals: int  # arrivals whose shown ETAs were scored
    scored: int  # shown ETAs scored
    mae_s: float | None
    range_held: float | None


class TargetFigure(msgspec.Struct, frozen=True):
    within_s: float
    target_share: float
    share: float | None
    met: bool | None


class IncidentFigures(msgspec.Struct, frozen=True):
    raised: int
    by_kind: dict[str, int]
    acknowledged: int
    open: int
    ack_p50_s: float | None
    ack_p90_s: float | None
    targets: list[TargetFigure]
    escalations: dict[str, int]


class Stats(msgspec.Struct, frozen=True):
    t_from: float
    t_to: float
    city: str | None
    bookings: int
    bookings_by_status: dict[str, int]
    visits: VisitFigures
    eta: EtaFigures
    incidents: IncidentFigures


def compute(
    bookings: Iterable[Booking],
    incidents: Iterable[Incident],
    *,
    t_from: float,
    t_to: float,
    city: str | None,
) -> Stats:
    """The figures of the bookings and incidents given (already chosen by period and city)."""
    booked = list(bookings)
    return Stats(
        t_from=t_from,
        t_to=t_to,
        city=city,
        bookings=len(booked),
        bookings_by_status=dict(sorted(Counter(b.status.value for b in booked).items())),
        visits=_visits(booked),
        eta=_eta(booked),
        incidents=_incidents(list(incidents)),
    )


def decided_by_hand(actor: str) -> bool:
    """Whether a transition was a person's call (through the API), not the hub's own."""
    return actor.partition(":")[0] in PERSON_ROLES


def _visits(bookings: Sequence[Booking]) -> VisitFigures:
    arrived = [b for b in bookings if b.arrived_t is not None]
    manual = sum(1 for b in arrived if b.checked_in_by and decided_by_hand(b.checked_in_by))
    automatic = len(arrived) - manual
    windowed = sorted(
        (b for b in arrived if b.window_end_t is not None),
        key=lambda b: (b.arrived_t or 0.0, b.id),
    )[-ON_TIME_VISITS:]
    on_time = sum(1 for b in windowed if (b.arrived_t or math.inf) <= (b.window_end_t or 0.0))
    return VisitFigures(
        checked_in=len(arrived),
        automatic=automatic,
        manual=manual,
        automatic_share=_share(automatic, len(arrived)),
        on_time_counted=len(windowed),
        on_time_rate=_share(on_time, len(windowed)),
    )


def _eta(bookings: Sequence[Booking]) -> EtaFigures:
    scored = [b for b in bookings if b.eta_scored]
    count = sum(b.eta_scored or 0 for b in scored)
    if not count:
        return EtaFigures(arrivals=len(scored), scored=0, mae_s=None, range_held=None)
    error = sum((b.eta_mae_s or 0.0) * (b.eta_scored or 0) for b in scored)
    held = sum((b.eta_range_held or 0.0) * (b.eta_scored or 0) for b in scored)
    return EtaFigures(
        arrivals=len(scored),
        scored=count,
        mae_s=round(error / count, 1),
        range_held=round(held / count, 4),
    )


def time_to_ack_s(incident: Incident) -> float | None:
    """Seconds from the raise to the first ack (or a resolve without one); None if neither."""
    for entry in incident.audit:
        if entry.action in (IncidentAction.ACK.value, IncidentAction.RESOLVE.value):
            return max(0.0, entry.t - incident.created_t)
    return None


def _incidents(incidents: Sequence[Incident]) -> IncidentFigures:
    waits = sorted(w for w in map(time_to_ack_s, incidents) if w is not None)
    targets = []
    for within_s, target in ACK_TARGETS_S:
        # Of every incident raised: one never acknowledged counts against the target.
        share = _share(sum(1 for w in waits if w <= within_s), len(incidents))
        targets.append(
            TargetFigure(
                within_s=within_s,
                target_share=target,
                share=share,
                met=None if share is None else share >= target,
            )
        )
    escalations = Counter(step for i in incidents for step in i.escalations)
    return IncidentFigures(
        raised=len(incidents),
        by_kind=dict(sorted(Counter(i.kind for i in incidents).items())),
        acknowledged=len(waits),
        open=sum(1 for i in incidents if i.is_open),
        ack_p50_s=_quantile(waits, 0.5),
        ack_p90_s=_quantile(waits, 0.9),
        targets=targets,
        escalations=dict(sorted(escalations.items())),
    )


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _quantile(ordered: Sequence[float], q: float) -> float | None:
    """The q-quantile by linear interpolation between the closest ranks (as numpy's
    default); None for no values."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    value = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    return round(value, 1)
