"""The scores as the Markdown tables of the README and loadtest/results/arrival.md."""

from __future__ import annotations

import math
from collections.abc import Iterator

from loadtest.arrival.eta_score import HorizonScore
from loadtest.arrival.presence_score import PresenceScore
from loadtest.arrival.replay import Event
from loadtest.arrival.score import Report


def format_markdown(report: Report, title: str = "Arrival accuracy") -> str:
    """The results as Markdown tables: ETA by horizon, presence, cases, failing trips."""
    lines = [f"## {title}", ""]
    no_visit = report.ours.no_visits
    lines += [
        f"{report.trips} trips ({report.scored_trips} with ground truth: {report.ours.visits} "
        f"visits, {no_visit} without a visit), {report.fixes:,} fixes, "
        f"{report.predictions:,} ETA predictions. Circuity and travel times learned online "
        f"from {report.learned_trips} completed approaches"
        + (f" (global circuity {report.circuity:.2f})." if report.circuity else "."),
        "",
    ]
    lines += _eta_table(report)
    band = _band_table(report)
    if band:
        lines += ["", *band]
    lines += ["", *_presence_table(report), ""]
    lines += _case_table(report)
    failures = _failure_lines(report)
    if failures:
        lines += ["", "Trips where our detector failed:", "", *failures]
    return "\n".join(lines) + "\n"


def _horizon_rows(report: Report) -> Iterator[tuple[str, HorizonScore]]:
    """Each horizon with its table label, then the overall row in bold."""
    for h in (*report.horizons, report.overall):
        label = f"{h.lo_s / 60:g}-{h.hi_s / 60:g} min"
        yield (f"**all {label}**" if h is report.overall else label), h


def _eta_table(report: Report) -> list[str]:
    if report.routed:
        return _routed_eta_table(report)
    lines = [
        "| ETA, time to arrival | fixes | MAE ours | MAE baseline | ours / baseline "
        "| within 20 % ours | within 20 % baseline |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, h in _horizon_rows(report):
        lines.append(
            f"| {label} | {h.n:,} | {_s(h.mae_s)} | {_s(h.baseline_mae_s)} | {_ratio(h.ratio)} "
            f"| {_pct(h.within)} | {_pct(h.baseline_within)} |"
        )
    return lines


def _routed_eta_table(report: Report) -> list[str]:
    lines = [
        "| ETA, time to arrival | fixes | MAE baseline | MAE ours, no routing engine "
        "| ours / baseline | MAE ours, with routing engine | ours / baseline "
        "| within 20 %: baseline / ours / ours routed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, h in _horizon_rows(report):
        lines.append(
            f"| {label} | {h.n:,} | {_s(h.baseline_mae_s)} | {_s(h.mae_s)} | {_ratio(h.ratio)} "
            f"| {_s(h.routed_mae_s)} | {_ratio(h.routed_ratio)} "
            f"| {_pct(h.baseline_within)} / {_pct(h.within)} / {_pct(h.routed_within)} |"
        )
    return lines


def _band_table(report: Report) -> list[str]:
    """How honest the range shown with the ETA is: how often the arrival fell inside it
    ("range held": t + low_s <= true arrival <= t + high_s), by horizon and overall."""
    if all(math.isnan(h.in_band) for _, h in _horizon_rows(report)):
        return []
    routed = report.routed
    lines = [
        "| ETA range shown (low..high), time to arrival "
        "| range held (arrival inside the band), ours | band width, median |"
        + (" range held, routed | band width, routed |" if routed else ""),
        "|---|---:|---:|" + ("---:|---:|" if routed else ""),
    ]
    for label, h in _horizon_rows(report):
        line = f"| {label} | {_pct(h.in_band)} | {_s(h.band_width_s)} |"
        if routed:
            line += f" {_pct(h.routed_in_band)} | {_s(h.routed_band_width_s)} |"
        lines.append(line)
    return lines


def _presence_table(report: Report) -> list[str]:
    ours, naive = report.ours, report.naive
    rows = [
        (
            "visits checked in",
            f"{ours.check_ins}/{ours.visits}",
            f"{naive.check_ins}/{naive.visits}",
        ),
        ("missed check-ins", str(ours.missed_check_ins), str(naive.missed_check_ins)),
        ("false check-ins", str(ours.false_check_ins), str(naive.false_check_ins)),
        (
            "... on trips without a visit (drive-pasts)",
            str(ours.no_visit_check_ins),
            str(naive.no_visit_check_ins),
        ),
        (
            "... premature: decided > 1 min before the true arrival, held into the visit",
            str(ours.premature_check_ins),
            str(naive.premature_check_ins),
        ),
        (
            "... away from the visit (before it and undone, or after it)",
            str(_away(ours)),
            str(_away(naive)),
        ),
        (
            "... repeats within a visit (flapping)",
            str(ours.repeat_check_ins),
            str(naive.repeat_check_ins),
        ),
        (
            "false check-outs (while inside)",
            str(ours.false_check_outs),
            str(naive.false_check_outs),
        ),
        ("missed check-outs", str(ours.missed_check_outs), str(naive.missed_check_outs)),
        (
            "check-in delay, median / p95 (decided - true arrival)",
            _pair(ours.checkin_delay_s),
            _pair(naive.checkin_delay_s),
        ),
        (
            "check-in timestamp error, median / p95 (stamped - true arrival)",
            _pair(ours.checkin_stamp_s),
            _pair(naive.checkin_stamp_s),
        ),
        (
            "check-out delay, median / p95 (decided - true departure)",
            _pair(ours.checkout_delay_s),
            _pair(naive.checkout_delay_s),
        ),
        (
            "... after the van pulled away, median / p95 (decided - drove off)",
            _pair(ours.checkout_after_drive_s),
            _pair(naive.checkout_after_drive_s),
        ),
        (
            "check-out timestamp error, median / p95 (stamped - true departure)",
            _pair(ours.checkout_stamp_s),
            _pair(naive.checkout_stamp_s),
        ),
    ]
    lines = ["| presence | ours | baseline (raw fence test) |", "|---|---:|---:|"]
    lines += [f"| {name} | {a} | {b} |" for name, a, b in rows]
    return lines


def _away(score: PresenceScore) -> int:
    named = score.no_visit_check_ins + score.premature_check_ins + score.repeat_check_ins
    return score.false_check_ins - named


def _case_table(report: Report) -> list[str]:
    routed = report.routed
    lines = [
        "| case | trips | presence failures ours | presence failures baseline "
        "| ETA MAE 0-20 min ours | baseline |" + (" ours, routed |" if routed else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if routed else ""),
    ]
    for c in report.cases:
        lines.append(
            f"| {c.case} | {c.trips} | {c.failed_trips} | {c.naive_failed_trips} "
            f"| {_s(c.mae_s)} | {_s(c.baseline_mae_s)} |"
            + (f" {_s(c.routed_mae_s)} |" if routed else "")
        )
    return lines


def _failure_lines(report: Report) -> list[str]:
    lines = []
    for v in report.failures:
        spec = report.specs[v.trip_id]
        what = []
        for e in v.false_check_ins:
            label = "premature check-in" if v.premature and e is v.check_in else "false check-in"
            what.append(f"{label} {_when(e, spec.arrived_t)}")
        what += [f"false check-out {_when(e, spec.arrived_t)}" for e in v.false_check_outs]
        if v.missed_check_in:
            what.append("missed check-in")
        if v.missed_check_out:
            what.append("missed check-out")
        tags = ", ".join(spec.tags) or "-"
        lines.append(f"- `{v.trip_id}` ({spec.kind or '?'}; {tags}): {'; '.join(what)}")
    return lines


def _when(event: Event, arrived: float | None) -> str:
    if arrived is None:
        return f"stamped t={event.t:.0f}, decided {event.decided_t - event.t:.0f} s later"
    return (
        f"stamped {event.t - arrived:+.0f} s, decided {event.decided_t - arrived:+.0f} s "
        "from the true arrival"
    )


def _s(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f} s"


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.0f} %"


def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def _pair(values: tuple[float, float]) -> str:
    return f"{_s(values[0])} / {_s(values[1])}"
