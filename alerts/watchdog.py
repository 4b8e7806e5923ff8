"""The visit watchdog: overdue visits and lost signal, decided from data and a time argument.

Pure: no I/O and no clock (sans-I/O, like ``alerts/escalation.py``). A *visit* is a booking
in ``arrived`` or ``in_service``; the hub hands in what it knows of it (``Visit``) and the
watch state it keeps for it (``Watch``), and gets back the new state and the decisions:

- ``prompt``: the visit ran past its expected duration plus a margin, so the technician's
  app asks "are you OK?" (a check with an id and an answer-by time).
- ``raise_incident``: nobody answered that check in time. Once per check: the incident is
  the operators' to handle from then on, and its escalation does the reminding.
- ``signal_lost``: no fix for ``signal_lost_s`` during the visit. Once per silence: the next
  fix re-arms it, so a technician in and out of a basement is one alert per silence, not
  one per tick.

An "ok" answer closes the check and asks again ``recheck_after_ok_s`` later (the visit is
still overdue). The state is a small msgspec Struct the hub stores on every change, so a
restart neither repeats a prompt, an incident or an alert, nor forgets an open check.
Decision keys are stable (``<booking>:check:<n>``, ``<booking>:signal:<n>``): the hub uses
them as the ids of what it raises, so acting twice on one decision (a crash between acting
and storing the new state) raises one incident and one alert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import StrEnum

import msgspec


class DecisionKind(StrEnum):
    PROMPT = "prompt"  # ask the technician "are you OK?"
    RAISE_INCIDENT = "raise_incident"  # the check went unanswered
    SIGNAL_LOST = "signal_lost"  # no fix for too long during the visit


@dataclass(frozen=True)
class WatchdogConfig:
    # Visits run over for ordinary reasons (a stubborn stain, a chatty customer); asking the
    # minute the booked time is up would teach technicians to swipe the question away.
    overdue_margin_s: float = 900.0
    # Long enough to get a phone out of a pocket and answer, short enough that help is not
    # late for someone who cannot.
    check_timeout_s: float = 120.0
    # After an "ok" the visit is still overdue; ask again in a while, not at every tick.
    recheck_after_ok_s: float = 900.0
    # Indoor GPS drops out for minutes (basements, lifts, thick walls); ten minutes of
    # silence during a visit is unusual enough to show an operator, rare enough not to flood.
    signal_lost_s: float = 600.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            minimum_ok = value >= 0 if field.name == "overdue_margin_s" else value > 0
            if not math.isfinite(value) or not minimum_ok:
                bound = ">= 0" if field.name == "overdue_margin_s" else "> 0"
                raise ValueError(f"{field.name} must be finite and {bound}, got {value}")


@dataclass(frozen=True)
class Visit:
    """What the hub knows of one visit at the time of a decision."""

    booking_id: str
    technician_id: str
    arrived_t: float  # when the visit began (check-in)
    expected_duration_s: float  # as booked
    last_fix_t: float | None = None  # when the hub last heard a fix from the technician


class OpenCheck(msgspec.Struct, frozen=True, omit_defaults=True):
    """An "are you OK?" sent and not answered yet."""

    id: str
    t: float  # when it was asked
    answer_by: float
    incident_raised: bool = False  # the answer is late: an incident was raised for it


class Watch(msgspec.Struct, frozen=True, omit_defaults=True):
    """The watchdog's state for one visit; stored by the hub whenever it changes."""

    booking_id: str
    technician_id: str
    checks: int = 0  # checks asked so far; numbers the check ids
    check: OpenCheck | None = None
    ok_t: float | None = None  # the last "ok": the next check is due from there
    losses: int = 0  # signal-lost alerts so far; numbers their keys
    # The time of the last fix when the current silence was reported; None when armed.
    lost_since: float | None = None


class Decision(msgspec.Struct, frozen=True, omit_defaults=True):
    kind: DecisionKind
    key: str  # stable: the check id, or "<booking>:signal:<n>"
    booking_id: str
    technician_id: str
    t: float
    answer_by: float | None = None  # prompt: when the answer is due
    silent_since: float | None = None  # signal_lost: the last fix (or the arrival) before it


class UnknownCheck(Exception):
    """An answer to a check this visit never asked."""


def check_id(booking_id: str, number: int) -> str:
    return f"{booking_id}:check:{number}"


def new_watch(visit: Visit) -> Watch:
    """The state of a visit nothing has happened to yet."""
    return Watch(booking_id=visit.booking_id, technician_id=visit.technician_id)


def next_check_t(watch: Watch, visit: Visit, config: WatchdogConfig) -> float | None:
    """When the next "are you OK?" is due; None while one is waiting for its answer."""
    if watch.check is not None:
        return None
    if watch.ok_t is not None:
        return watch.ok_t + config.recheck_after_ok_s
    return visit.arrived_t + visit.expected_duration_s + config.overdue_margin_s


def silent_since(visit: Visit) -> float:
    """The start of the current silence: the last fix, but never before the visit began."""
    if visit.last_fix_t is None:
        return visit.arrived_t
    return max(visit.last_fix_t, visit.arrived_t)


def evaluate(
    watch: Watch, visit: Visit, config: WatchdogConfig, now: float
) -> tuple[Watch, list[Decision]]:
    """The new state of a visit's watch at ``now`` and what to do about it (often nothing)."""
    if watch.booking_id != visit.booking_id:
        raise ValueError(f"watch of {watch.booking_id} evaluated with visit {visit.booking_id}")
    decisions: list[Decision] = []

    def decide(kind: DecisionKind, key: str, **extra: float) -> None:
        decisions.append(
            Decision(
                kind=kind,
                key=key,
                booking_id=visit.booking_id,
                technician_id=visit.technician_id,
                t=now,
                **extra,
            )
        )

    due = next_check_t(watch, visit, config)
    if due is not None and now >= due:
        number = watch.checks + 1
        check = OpenCheck(
            id=check_id(visit.booking_id, number), t=now, answer_by=now + config.check_timeout_s
        )
        watch = msgspec.structs.replace(watch, checks=number, check=check)
        decide(DecisionKind.PROMPT, check.id, answer_by=check.answer_by)
    elif (
        watch.check is not None and not watch.check.incident_raised and now >= watch.check.answer_by
    ):
        check = msgspec.structs.replace(watch.check, incident_raised=True)
        watch = msgspec.structs.replace(watch, check=check)
        decide(DecisionKind.RAISE_INCIDENT, check.id)

    since = silent_since(visit)
    if watch.lost_since is not None and since > watch.lost_since:
        watch = msgspec.structs.replace(watch, lost_since=None)  # fixes resumed: re-armed
    if watch.lost_since is None and now - since >= config.signal_lost_s:
        number = watch.losses + 1
        watch = msgspec.structs.replace(watch, losses=number, lost_since=since)
        decide(DecisionKind.SIGNAL_LOST, f"{visit.booking_id}:signal:{number}", silent_since=since)
    return watch, decisions


def knows(watch: Watch, answered_id: str) -> bool:
    """True when ``answered_id`` is a check this watch has asked (open or answered)."""
    return any(answered_id == check_id(watch.booking_id, n) for n in range(1, watch.checks + 1))


def answer_ok(watch: Watch, answered_id: str, now: float) -> Watch:
    """The technician said "ok": close the open check and count the next one from ``now``.

    An answer to an older check (a resend after a reconnect) changes nothing and returns
    ``watch`` itself. A late answer, after the incident was raised, still closes the check:
    the incident stays for an operator to resolve, but the technician is asked again later.
    """
    if not knows(watch, answered_id):
        raise UnknownCheck(f"visit {watch.booking_id} never asked check {answered_id!r}")
    if watch.check is None or watch.check.id != answered_id:
        return watch
    return msgspec.structs.replace(watch, check=None, ok_t=now)
