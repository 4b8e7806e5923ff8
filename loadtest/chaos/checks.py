"""The soak's verdicts: pure functions over what the clients recorded and what the hubs'
HTTP API returned after the run. Each gives pass or fail with its figures."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtest.chaos.records import ConsoleRecord, RssSample, SosRecord, TechRecord

MIB = 1024 * 1024
# The hub's check-in dwell (geofence/presence.py, PresenceConfig.dwell_in_s) and a margin for
# the fixes in flight around a reconnect.
DWELL_IN_S = 120.0
DWELL_MARGIN_S = 30.0
_SHOWN = 10  # problems listed by name; the figures count them all


@dataclass
class CheckResult:
    name: str
    passed: bool
    figures: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        figures = ", ".join(f"{k} {v}" for k, v in self.figures.items())
        return f"{verdict} {self.name}: {figures}"


def check_sos(
    presses: Sequence[SosRecord],
    incidents: Iterable[Mapping[str, Any]],
    consoles: Sequence[ConsoleRecord],
) -> CheckResult:
    """Every press acknowledged, exactly one incident per press (by reporter and client id),
    and every incident seen by at least one operator console. A console told of one incident
    more than once is counted (``duplicates``), not failed: consoles dedupe by id."""
    stored: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for incident in incidents:
        reporter = incident.get("reporter") or {}
        key = (str(reporter.get("sub")), str(incident.get("client_id")))
        stored[key].append(str(incident["id"]))
    problems = []
    unacked = [p for p in presses if p.incident is None]
    problems += [f"SOS {p.client_id} of {p.technician_id} never acked: {p.error}" for p in unacked]
    not_one = 0
    unseen = 0
    duplicates = 0
    for press in presses:
        ids = stored.get((press.technician_id, press.client_id), [])
        if len(ids) != 1 or (press.incident is not None and ids != [press.incident]):
            not_one += 1
            problems.append(
                f"SOS {press.client_id}: {len(ids)} incidents {ids}, acked as {press.incident}"
            )
        incident = press.incident or (ids[0] if ids else None)
        if incident is None:
            continue
        seen_by = [c for c in consoles if c.raised[incident] or incident in c.in_snapshot]
        if not seen_by:
            unseen += 1
            problems.append(f"incident {incident} (SOS {press.client_id}) reached no console")
        duplicates += sum(max(0, c.raised[incident] - 1) for c in consoles)
    delays = sorted(p.ack_after_s for p in presses if p.ack_after_s is not None)
    figures = {
        "pressed": len(presses),
        "acked": len(presses) - len(unacked),
        "via_http": sum(p.via == "http" for p in presses),
        "not_exactly_one_incident": not_one,
        "reached_no_console": unseen,
        "reached_every_console": sum(
            all(c.raised[p.incident] or p.incident in c.in_snapshot for c in consoles)
            for p in presses
            if p.incident is not None
        ),
        "consoles": len(consoles),
        "duplicates_at_consoles": duplicates,
        "ack_max_s": round(delays[-1], 2) if delays else None,
    }
    passed = bool(presses) and not unacked and not_one == 0 and unseen == 0
    if not presses:
        problems.append("no SOS was pressed")
    return CheckResult("sos", passed, figures, problems[:_SHOWN])


def longest_parked_on_one_hub(record: TechRecord) -> float:
    """Fix-time seconds, parked at the door, that one hub process received and acked in one
    unbroken stretch: consecutive connections to the same process count as one (its tracker
    carries on), a move to another process (a kill, a drop sent elsewhere) starts again.

    The check-in dwell is counted by the hub that receives the fixes, in its memory, so only
    such a stretch is sure to let one hub see the whole dwell."""
    spans: list[tuple[str, int, int]] = []  # (hub process, first seq, last seq), in order
    for ack in record.acks:
        hub = record.hubs.get(ack.connection, f"?{ack.connection}")
        if ack.resume:
            if spans and spans[-1][0] == hub and not hub.startswith("?"):
                continue  # back on the same process: its stretch goes on
            spans.append((hub, ack.seq + 1, ack.seq))
        elif spans:
            name, first, _ = spans[-1]
            spans[-1] = (name, first, ack.seq)
    best = 0.0
    for _, first, last in spans:
        if last < first or last not in record.stamps:
            continue
        start = max(record.stamps.get(first, record.parked_from_t), record.parked_from_t)
        best = max(best, record.stamps[last] - start)
    return best


def check_checkins(
    technicians: Sequence[TechRecord], bookings: Mapping[str, Mapping[str, Any]]
) -> CheckResult:
    """Every technician who stayed at the door long enough on one hub is checked in, once.

    "Long enough" is the hub's dwell plus a margin on one hub process (see
    ``longest_parked_on_one_hub``); a technician moved between hubs more often than
    that is counted (``not_judged``) and whether it got checked in anyway is shown."""
    problems = []
    judged = checked = lost = twice = 0
    unjudged = unjudged_checked = 0
    for record in technicians:
        booking = bookings.get(record.booking_id) or {}
        check_ins = [e for e in booking.get("events") or () if e.get("event") == "check_in"]
        if len(check_ins) > 1:
            twice += 1
            problems.append(f"{record.booking_id}: {len(check_ins)} check-ins")
        arrived = longest_parked_on_one_hub(record) >= DWELL_IN_S + DWELL_MARGIN_S
        if arrived:
            judged += 1
            if check_ins:
                checked += 1
            else:
                lost += 1
                problems.append(
                    f"{record.booking_id} ({record.technician_id}): parked"
                    f" {longest_parked_on_one_hub(record):.0f} s on one hub, status"
                    f" {booking.get('status')}, no check-in"
                )
        else:
            unjudged += 1
            unjudged_checked += bool(check_ins)
    figures = {
        "arrived": judged,
        "checked_in": checked,
        "lost": lost,
        "checked_in_twice": twice,
        "not_judged": unjudged,
        "not_judged_checked_in": unjudged_checked,
    }
    passed = judged > 0 and lost == 0 and twice == 0
    if judged == 0:
        problems.append("no technician stayed at the door long enough on one hub to judge")
    return CheckResult("check_ins", passed, figures, problems[:_SHOWN])


def check_fixes(
    technicians: Sequence[TechRecord], tracks: Mapping[str, Sequence[int]]
) -> CheckResult:
    """Every fix the hub acknowledged is in the technician's stored history exactly once."""
    problems = []
    acked = stored = duplicates = missing = 0
    for record in technicians:
        seqs = tracks.get(record.technician_id, [])
        counts = Counter(seqs)
        stored += len(seqs)
        doubled = [s for s, n in counts.items() if n > 1]
        # The hub's acks are cumulative: ack n says every seq up to n is stored.
        absent = [s for s in range(record.acked_seq + 1) if s not in counts]
        acked += record.acked_seq + 1
        duplicates += sum(counts[s] - 1 for s in doubled)
        missing += len(absent)
        if doubled:
            problems.append(f"{record.technician_id}: seqs stored twice {sorted(doubled)[:5]}")
        if absent:
            problems.append(f"{record.technician_id}: acked seqs missing {absent[:5]}")
    figures = {
        "acked": acked,
        "stored": stored,
        "duplicates": duplicates,
        "missing": missing,
        "unacked_at_end": sum(r.unacked for r in technicians),
        "dropped_by_sdk": sum(r.dropped for r in technicians),
        "rejected": sum(r.rejected for r in technicians),
    }
    passed = acked > 0 and duplicates == 0 and missing == 0
    return CheckResult("fixes", passed, figures, problems[:_SHOWN])


def slope_per_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60.0


def check_rss(
    samples: Sequence[RssSample], *, warmup_s: float, min_judged_s: float, bound_mib_per_min: float
) -> CheckResult:
    """Each hub process's RSS, after its warm-up, grows by less than the bound (a fitted
    slope). A restarted hub is a series of its own, judged only if it lived long enough."""
    by_series: defaultdict[str, list[RssSample]] = defaultdict(list)
    for sample in samples:
        by_series[sample.series].append(sample)
    slopes: dict[str, float] = {}
    short = []
    problems = []
    for name, series in sorted(by_series.items()):
        after = [(s.t_s, s.rss / MIB) for s in series if s.t_s >= warmup_s]
        if len(after) < 2 or after[-1][0] - after[0][0] < min_judged_s:
            short.append(name)
            continue
        slopes[name] = round(slope_per_min(after), 3)
        if slopes[name] > bound_mib_per_min:
            problems.append(f"{name}: RSS grows {slopes[name]} MiB/min after warm-up")
    peaks = {name: round(max(s.rss for s in series) / MIB, 1) for name, series in by_series.items()}
    figures = {
        "bound_mib_per_min": bound_mib_per_min,
        "warmup_s": warmup_s,
        "slope_mib_per_min": slopes,
        "peak_mib": peaks,
        "too_short_to_judge": short,
    }
    if not slopes:
        problems.append("no hub process lived long enough after warm-up to judge")
    return CheckResult("rss_flat", bool(slopes) and not problems, figures, problems[:_SHOWN])
