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
    repeated: list[str] = []
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
        repeats = sum(max(0, c.raised[incident] - 1) for c in consoles)
        duplicates += repeats
        if repeats:
            repeated.append(f"{press.client_id} (acked via {press.via}, {repeats} repeats)")
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
        "repeated_sos": repeated[:_SHOWN],
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


@dataclass(frozen=True)
class RssFit:
    slope_mib_per_min: float  # growth at a constant connection high-water mark
    kib_per_connection: float | None  # None: the high-water mark did not move
    judged_s: float


def fit_rss(segments: Sequence[Sequence[tuple[float, float, float]]]) -> RssFit:
    """RSS (MiB) against time and the connection high-water mark, within segments.

    Each segment is (seconds, connections high-water, MiB) points between two faults; each
    gets its own level (a fault moves clients between hubs, a Redis restart queues fixes),
    and one slope in time and one per connection are fitted across all of them. The
    high-water mark, not the count now: memory a socket took is rarely given back to the OS
    when it closes, so a hub that gains clients one drop at a time grows without leaking."""
    stt = stc = scc = stv = scv = 0.0
    judged = 0.0
    for points in segments:
        n = len(points)
        mt = sum(p[0] for p in points) / n
        mc = sum(p[1] for p in points) / n
        mv = sum(p[2] for p in points) / n
        for t, c, v in points:
            dt, dc, dv = t - mt, c - mc, v - mv
            stt, stc, scc = stt + dt * dt, stc + dt * dc, scc + dc * dc
            stv, scv = stv + dt * dv, scv + dc * dv
        judged += points[-1][0] - points[0][0]
    det = stt * scc - stc * stc
    if scc == 0 or det <= 1e-9 * stt * scc:
        # The high-water mark did not move (or moved in step with time): time alone.
        return RssFit(stv / stt * 60.0 if stt else 0.0, None, judged)
    slope = (stv * scc - scv * stc) / det
    per_connection = (scv * stt - stv * stc) / det
    return RssFit(slope * 60.0, per_connection * 1024.0, judged)


def rss_segments(
    series: Sequence[RssSample], fault_times: Sequence[float], warmup_s: float, settle_s: float
) -> list[list[tuple[float, float, float]]]:
    """The series' points after warm-up, cut at every fault, each cut's first ``settle_s``
    left out (reconnects and catch-up there are load, not growth)."""
    faults = sorted(fault_times)
    high = 0
    cuts: defaultdict[int, list[tuple[float, float, float]]] = defaultdict(list)
    for sample in sorted(series, key=lambda s: s.t_s):
        high = max(high, sample.connections)
        if sample.t_s < warmup_s:
            continue
        before = [f for f in faults if f <= sample.run_s]
        if before and sample.run_s - before[-1] < settle_s:
            continue
        cuts[len(before)].append((sample.t_s, float(high), sample.rss / MIB))
    return [points for _, points in sorted(cuts.items()) if len(points) >= 3]


def check_rss(
    samples: Sequence[RssSample],
    *,
    fault_times: Sequence[float],
    warmup_s: float,
    settle_s: float,
    min_judged_s: float,
    bound_mib_per_min: float,
) -> CheckResult:
    """Each hub process's RSS, after its warm-up, grows by less than the bound: like with
    like, so each life of a hub is a series of its own, cut at the faults, with the growth
    that more connections explain fitted apart (``fit_rss``)."""
    by_series: defaultdict[str, list[RssSample]] = defaultdict(list)
    for sample in samples:
        by_series[sample.series].append(sample)
    slopes: dict[str, float] = {}
    per_connection: dict[str, float | None] = {}
    short = []
    problems = []
    for name, series in sorted(by_series.items()):
        segments = rss_segments(series, fault_times, warmup_s, settle_s)
        fit = fit_rss(segments) if segments else None
        if fit is None or fit.judged_s < min_judged_s:
            short.append(name)
            continue
        slopes[name] = round(fit.slope_mib_per_min, 3)
        if fit.kib_per_connection is not None:
            per_connection[name] = round(fit.kib_per_connection, 1)
        if slopes[name] > bound_mib_per_min:
            problems.append(f"{name}: RSS grows {slopes[name]} MiB/min after warm-up")
    peaks = {name: round(max(s.rss for s in series) / MIB, 1) for name, series in by_series.items()}
    raw = {}
    for name, series in by_series.items():
        after = [(s.t_s, s.rss / MIB) for s in series if s.t_s >= warmup_s]
        if len(after) >= 2:
            raw[name] = round(slope_per_min(after), 3)
    figures = {
        "bound_mib_per_min": bound_mib_per_min,
        "warmup_s": warmup_s,
        "slope_mib_per_min": slopes,
        "kib_per_connection": per_connection,
        "raw_slope_mib_per_min": raw,
        "peak_mib": peaks,
        "too_short_to_judge": short,
    }
    if not slopes:
        problems.append("no hub process lived long enough after warm-up to judge")
    return CheckResult("rss_flat", bool(slopes) and not problems, figures, problems[:_SHOWN])
