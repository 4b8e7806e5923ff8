"""Scoring of the arrival evaluation on small hand-made cases, then one real replay."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from loadtest.arrival.learned import LearnedModels
from loadtest.arrival.presence_score import EARLY_TOLERANCE_S, judge
from loadtest.arrival.replay import Event, Prediction, Replay, replay
from loadtest.arrival.report import format_markdown
from loadtest.arrival.score import score
from loadtest.arrival.spec import TripSpec, fix_from_dict
from loadtest.traces import generate_trip

ARRIVED, DEPARTED = 10_000.0, 13_600.0


def visit(trip_id: str = "v", **kw: object) -> TripSpec:
    fields: dict = {"arrived_t": ARRIVED, "departed_t": DEPARTED, "has_truth": True} | kw
    return TripSpec(trip_id, 52.52, 13.405, **fields)


def drive_past(trip_id: str = "p") -> TripSpec:
    return TripSpec(trip_id, 52.52, 13.405, has_truth=True)


def check_in(t: float, decided: float | None = None, trip_id: str = "v") -> Event:
    return Event(trip_id, "check_in", t, t + 60 if decided is None else decided)


def check_out(t: float, trip_id: str = "v") -> Event:
    return Event(trip_id, "check_out", t, t + 120)


def predictions(trip_id: str, eta: object, start: float = ARRIVED - 1500) -> list[Prediction]:
    """One prediction every 10 s up to the arrival; ``eta(horizon)`` gives the ETA shown."""
    out = []
    t = start
    while t < ARRIVED:
        horizon = ARRIVED - t
        out.append(Prediction(trip_id, t, eta(horizon), 2 * horizon))  # type: ignore[operator]
        t += 10
    return out


# --- ETA -------------------------------------------------------------------------------------


def test_perfect_predictions_have_zero_error_and_are_all_within_20_percent():
    report = score([visit()], Replay(predictions=predictions("v", lambda h: h)))
    for h in (*report.horizons, report.overall):
        assert h.n > 0
        assert h.mae_s == 0 and h.within == 1.0
    # The baseline said twice the truth: its error is the horizon itself, never within 20 %.
    first = report.horizons[0]
    assert first.baseline_mae_s == pytest.approx(sum(range(10, 120, 10)) / 11)
    assert first.baseline_within == 0 and first.ratio == 0


def test_horizons_bucket_by_true_time_to_arrival():
    report = score([visit()], Replay(predictions=predictions("v", lambda h: h + 30)))
    counts = [h.n for h in report.horizons]
    assert counts == [11, 18, 30, 60]  # [0, 120), [120, 300) ... one every 10 s
    assert all(h.mae_s == pytest.approx(30) for h in report.horizons)
    # 30 s late is within 20 % only from 150 s out.
    assert report.horizons[0].within == 0 and report.horizons[2].within == 1


def test_predictions_after_arrival_or_without_a_visit_are_not_scored():
    late = [Prediction("v", ARRIVED + 5, 0.0, 0.0)]
    past = predictions("p", lambda h: 99 * h)
    report = score([visit(), drive_past()], Replay(predictions=late + past))
    assert report.overall.n == 0 and math.isnan(report.overall.mae_s)


# --- presence ------------------------------------------------------------------------------


def test_one_check_in_and_one_check_out_per_visit_is_right():
    verdict = judge(visit(), [check_in(ARRIVED + 5), check_out(DEPARTED + 10)])
    assert verdict.ok
    assert verdict.check_in is not None and verdict.check_out is not None


def test_a_flapping_detector_gets_a_false_check_out_and_a_false_check_in():
    events = [check_in(ARRIVED + 5), check_out(ARRIVED + 900), check_in(ARRIVED + 1000)]
    verdict = judge(visit(), [*events, check_out(DEPARTED)])
    assert len(verdict.false_check_outs) == 1
    assert len(verdict.false_check_ins) == 1 and verdict.repeat_check_ins == 1
    assert not verdict.missed_check_in


def test_a_check_in_on_a_drive_past_is_false_and_nothing_is_missed():
    verdict = judge(drive_past(), [check_in(5000.0, trip_id="p")])
    assert len(verdict.false_check_ins) == 1
    assert not verdict.missed_check_in and not verdict.false_check_outs


def test_no_check_in_during_a_visit_is_missed():
    assert judge(visit(), []).missed_check_in
    # a check-in stamped and decided after the visit is over does not find the visit either
    after = judge(visit(), [check_in(DEPARTED + 300)])
    assert after.missed_check_in and len(after.false_check_ins) == 1


def test_early_stamps_within_tolerance_or_decided_inside_count_as_the_visit():
    assert judge(visit(), [check_in(ARRIVED - EARLY_TOLERANCE_S + 1)]).ok
    # stamped at a drive-by 2 minutes earlier but decided at the door: the visit was found
    drive_by = judge(visit(), [check_in(ARRIVED - 120, decided=ARRIVED + 20)])
    assert drive_by.check_in is not None and not drive_by.false_check_ins
    # checked in 5 minutes early and out again before arriving: false, and the visit missed
    early = [check_in(ARRIVED - 300, decided=ARRIVED - 240), check_out(ARRIVED - 200)]
    verdict = judge(visit(), early)
    assert verdict.missed_check_in and len(verdict.false_check_ins) == 1


def test_a_check_in_held_from_before_the_visit_is_premature_but_not_missed():
    verdict = judge(visit(), [check_in(ARRIVED - 300, decided=ARRIVED - 240)])
    assert verdict.premature and verdict.check_in is not None
    assert not verdict.missed_check_in and len(verdict.false_check_ins) == 1
    assert verdict.repeat_check_ins == 0


def test_a_check_out_is_missed_only_if_the_trace_goes_on_long_enough():
    assert judge(visit(), [check_in(ARRIVED)], last_t=DEPARTED + 600).missed_check_out
    assert not judge(visit(), [check_in(ARRIVED)], last_t=DEPARTED + 30).missed_check_out


def test_delays_are_median_and_p95_over_visits():
    specs = [visit(f"v{i}") for i in range(20)]
    events = [check_in(ARRIVED, decided=ARRIVED + 10 * (i + 1), trip_id=f"v{i}") for i in range(20)]
    report = score(specs, Replay(events=events))
    assert report.ours.check_ins == 20 and report.ours.missed_check_ins == 0
    assert report.ours.checkin_delay_s == (105.0, 190.0)  # median of 10..200, nearest-rank p95
    assert report.ours.checkin_stamp_s == (0.0, 0.0)
    assert report.naive.missed_check_ins == 20  # no baseline events given


def test_trips_without_truth_are_replayed_but_not_scored():
    unknown = TripSpec("u", 52.52, 13.405)
    report = score([unknown, visit()], Replay(events=[check_in(1.0, trip_id="u")]))
    assert report.scored_trips == 1 and report.ours.false_check_ins == 0


# --- input ---------------------------------------------------------------------------------


def test_trips_file_entries_tell_unknown_truth_from_no_visit():
    base = {"trip_id": "a", "destination": {"lat": 1.0, "lon": 2.0}}
    unknown = TripSpec.from_dict(base)
    assert not unknown.has_truth and unknown.radius_m == 75.0
    none = TripSpec.from_dict(base | {"arrived_t": None, "geofence_radius_m": 120})
    assert none.has_truth and not none.visit and none.radius_m == 120
    with pytest.raises(ValueError, match="trip a"):
        TripSpec.from_dict({"trip_id": "a", "destination": {"lat": "north"}})
    with pytest.raises(ValueError, match="out of range"):
        TripSpec.from_dict(base | {"destination": {"lat": 95.0, "lon": 0.0}})


def test_fix_records_need_trip_time_and_position():
    trip_id, fix = fix_from_dict({"trip_id": "a", "t": 1, "lat": 2, "lon": 3, "acc": 9})
    assert trip_id == "a" and fix.acc == 9 and fix.speed is None
    for bad in ({"trip_id": "a", "t": 1, "lat": 2}, {"trip_id": "a", "t": "x", "lat": 2, "lon": 3}):
        with pytest.raises(ValueError):
            fix_from_dict(bad)


# --- a real replay ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run() -> tuple[list[TripSpec], Replay]:
    traces = [generate_trip(i, seed=5, kind=kind) for i, kind in enumerate(("normal", "normal"))]
    specs = [TripSpec.from_dict(t.truth.to_dict()) for t in traces]
    return specs, replay(specs, {t.truth.trip_id: t.fixes for t in traces})


def test_replay_predicts_until_check_in_and_learns_from_each_arrival(small_run):
    specs, result = small_run
    for spec in specs:
        ins = [e for e in result.events if e.trip_id == spec.trip_id and e.kind == "check_in"]
        assert ins, "every visit is checked in"
        times = [p.t for p in result.predictions if p.trip_id == spec.trip_id]
        assert times and max(times) < ins[0].decided_t
    assert result.learned_trips == 2
    assert result.naive_events  # the raw fence test ran beside it


def test_the_report_is_a_markdown_table_of_the_metrics(small_run):
    specs, result = small_run
    text = format_markdown(score(specs, result))
    for label in ("0-2 min", "2-5 min", "5-10 min", "10-20 min", "false check-ins", "baseline"):
        assert label in text
    assert text.count("\n|") > 15


def test_circuity_is_learned_in_time_order_so_no_trip_sees_the_future():
    trace = generate_trip(0, seed=5, kind="normal")
    spec = TripSpec.from_dict(trace.truth.to_dict())
    shift = 600.0  # the same trip again, ten minutes later, by another technician
    later = replace(spec, trip_id="later")
    fixes = {
        spec.trip_id: trace.fixes,
        "later": [replace(f, t=f.t + shift) for f in trace.fixes],
    }
    result = replay([spec, later], fixes)
    first = {p.t: p.eta_s for p in result.predictions if p.trip_id == spec.trip_id}
    learned_at = next(e.decided_t for e in result.events if e.kind == "check_in")
    same = changed = 0
    for p in result.predictions:
        if p.trip_id == "later" and p.t - shift in first:
            if p.t < learned_at:
                assert p.eta_s == first[p.t - shift]  # nothing learned yet: identical ETAs
                same += 1
            else:
                changed += p.eta_s != first[p.t - shift]
    assert same > 100 and changed > 100


def test_a_replay_can_start_from_what_an_earlier_one_learned():
    # Trip A teaches the models; trip B replayed alone from them is not the fresh estimate.
    first = generate_trip(0, seed=5, kind="normal")
    second = generate_trip(1, seed=5, kind="normal")
    a, b = (TripSpec.from_dict(t.truth.to_dict()) for t in (first, second))
    earlier = replay([a], {a.trip_id: first.fixes})
    assert earlier.learned is not None and earlier.learned.travel_times.to_dict()["cells"]
    saved = earlier.learned.to_dict()
    fresh = replay([b], {b.trip_id: second.fixes})
    warm = replay([b], {b.trip_id: second.fixes}, learned=LearnedModels.from_dict(saved))
    assert len(warm.predictions) == len(fresh.predictions) > 100
    pairs = zip(warm.predictions, fresh.predictions, strict=True)
    differ = sum(w.eta_s != f.eta_s for w, f in pairs)
    assert differ > len(fresh.predictions) // 2
    # ...and goes on learning: B's approach is added to A's.
    assert warm.circuity is not None and warm.circuity.to_dict()["global"][0] == 2


def test_the_replay_learns_speeds_once_per_approach_with_or_without_a_routing_engine(small_run):
    specs, result = small_run
    assert result.learned is not None
    speeds = result.learned.speeds
    # Both approaches drove several ~1.5 km cells; each cell and hour counts a trip once.
    assert speeds.trips >= 4
    traces = [generate_trip(i, seed=5, kind=kind) for i, kind in enumerate(("normal", "normal"))]
    fixes = {t.truth.trip_id: t.fixes for t in traces}
    # An engine that never answers: the second tracker per trip drives the same streets,
    # and must not teach them a second time.
    routed = replay(specs, fixes, route_distance=lambda spec, fix: None)
    assert routed.learned is not None
    assert routed.learned.speeds.counters() == pytest.approx(speeds.counters())


@pytest.mark.parametrize(
    "data, complaint",
    [
        ([], "not a version 1"),
        ({"version": 2}, "not a version 1"),
        ({"version": 1, "circuity": {"version": 1}}, "malformed circuity"),
        ({"version": 1}, "lacks"),
    ],
)
def test_a_learned_models_file_that_is_not_one_is_refused(data, complaint):
    with pytest.raises(ValueError, match=complaint):
        LearnedModels.from_dict(data)


def test_the_band_is_scored_by_how_often_it_held_the_true_arrival():
    # The band is [0.5h, 1.5h] below 5 minutes out and [0, 0.1h] beyond: it holds the
    # arrival there and misses it here.
    def banded(h: float) -> Prediction:
        t = ARRIVED - h
        band = (0.5 * h, 1.5 * h) if h < 300 else (0.0, 0.1 * h)
        return Prediction("v", t, h, 2 * h, band=band)

    report = score([visit()], Replay(predictions=[banded(h) for h in range(0, 1200, 10)]))
    by_label = {h.lo_s: h for h in report.horizons}
    assert by_label[0].in_band == by_label[120].in_band == 1.0
    assert by_label[300].in_band == by_label[600].in_band == 0.0
    assert by_label[120].band_width_s == pytest.approx(205.0)  # median h over 120..290 s
    assert math.isnan(by_label[0].routed_in_band)  # no routing engine, no routed band
    text = format_markdown(report)
    assert "arrival inside the band" in text


def test_predictions_without_a_band_leave_the_band_table_out():
    report = score([visit()], Replay(predictions=predictions("v", lambda h: h)))
    assert math.isnan(report.horizons[0].in_band)
    assert "arrival inside the band" not in format_markdown(report)
