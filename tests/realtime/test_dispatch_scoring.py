"""Dispatch scoring: hard filters with stable reasons, then a score in seconds of wait."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geofence.eta import EtaEstimator, StraightLineProvider
from geofence.eta_models import CircuityModel
from geofence.geo import destination_point, distance_m
from geofence.model import Fix
from realtime.batch_match import match
from realtime.dispatch import (
    MAX_POSITION_AGE_S,
    BookingFacts,
    Candidate,
    Components,
    Excluded,
    Reason,
    batch_cost,
    evaluate,
    route_eta,
)
from realtime.dispatch_weights import DEFAULT_WEIGHTS, DispatchWeights
from realtime.history_score import HistoryScore

NOW = 1_700_000_000.0
HOME = (52.52, 13.405)
BOOKING = BookingFacts(*HOME, frozenset({"plumbing"}))


def history(score: float) -> HistoryScore:
    return HistoryScore(
        visits=50, completion_rate=score, on_time_rate=score, cancellations=0, score=score
    )


def tech(
    technician_id: str,
    *,
    online: bool = True,
    free: bool = True,
    in_area: bool = True,
    on_shift: bool = True,
    skills: frozenset[str] = frozenset({"plumbing"}),
    fix_age_s: float = 30.0,
    rating: float | None = 5.0,
    history_score: float | None = 1.0,
    jobs_today: int = 0,
) -> Candidate:
    return Candidate(
        technician_id,
        HOME[0] + 0.01,
        HOME[1],
        NOW - fix_age_s,
        skills,
        online=online,
        free=free,
        in_area=in_area,
        on_shift=on_shift,
        rating=rating,
        history=None if history_score is None else history(history_score),
        jobs_today=jobs_today,
    )


def etas(table: dict[str, float]):
    """An ETA function from a table of seconds; the distance is 10 m a second of ETA."""
    calls: list[str] = []

    def eta_of(candidate: Candidate) -> tuple[float, float]:
        calls.append(candidate.technician_id)
        return table[candidate.technician_id], 10.0 * table[candidate.technician_id]

    eta_of.calls = calls  # type: ignore[attr-defined]
    return eta_of


def test_each_component_in_seconds_of_wait_and_the_total_ranks():
    candidates = [
        # 600 + 120 x (5 - 4) + 300 x (1 - 0.8) + 90 x (5 - 3) + 0 = 600 + 120 + 60 + 180 = 960
        tech("near", rating=4.0, history_score=0.8, jobs_today=5),
        # 900 + 0 + 300 x 0.05 + 0 (2 jobs is below the median: no credit) = 915
        tech("far", rating=5.0, history_score=0.95, jobs_today=2),
        # 1000 + 120 (unrated = 4.0) + 30 (no history = 0.9) + 0 - 300 (preferred) = 850
        tech("pref", rating=None, history_score=None, jobs_today=3),
    ]
    booking = BookingFacts(*HOME, frozenset({"plumbing"}), preferred_technician_id="pref")
    evaluation = evaluate(
        candidates,
        booking,
        etas({"near": 600.0, "far": 900.0, "pref": 1000.0}),
        DEFAULT_WEIGHTS,
        city_median_jobs=3.0,
        now=NOW,
    )
    assert [r.technician_id for r in evaluation.ranked] == ["pref", "far", "near"]
    assert [r.total_s for r in evaluation.ranked] == pytest.approx([850.0, 915.0, 960.0])
    near = evaluation.ranked[2]
    assert near.components.eta_s == 600.0
    assert near.components.rating_s == 120.0
    assert near.components.history_s == pytest.approx(60.0)
    assert near.components.fairness_s == 180.0
    assert near.components.preferred_s == 0.0
    pref = evaluation.ranked[0]
    assert pref.components == Components(
        eta_s=1000.0,
        rating_s=120.0,
        history_s=pytest.approx(30.0),  # type: ignore[arg-type]
        fairness_s=0.0,
        preferred_s=-300.0,
    )
    assert (near.eta_s, near.distance_m, near.position_age_s) == (600.0, 6000.0, 30.0)
    assert evaluation.excluded == []


def test_the_weights_scale_their_components():
    weights = DispatchWeights(eta=2.0, rating_per_star_s=10.0, history_s=0.0)
    # 2 x 100 + 10 x (5 - 3.5) + 0 = 215
    ranked = evaluate(
        [tech("a", rating=3.5, history_score=0.0)], BOOKING, etas({"a": 100.0}), weights, 0, NOW
    ).ranked
    assert ranked[0].total_s == 215.0
    assert ranked[0].components.history_s == 0.0


def test_a_fractional_median_charges_the_part_above_it():
    # median 2.5: 3 jobs -> 0.5 x 90 = 45 s; 2 jobs -> nothing.
    evaluation = evaluate(
        [tech("three", jobs_today=3), tech("two", jobs_today=2)],
        BOOKING,
        etas({"three": 100.0, "two": 100.0}),
        DEFAULT_WEIGHTS,
        city_median_jobs=2.5,
        now=NOW,
    )
    fairness = {r.technician_id: r.components.fairness_s for r in evaluation.ranked}
    assert fairness == {"three": 45.0, "two": 0.0}
    assert [r.technician_id for r in evaluation.ranked] == ["two", "three"]


def test_equal_totals_go_to_the_shorter_eta_then_the_smaller_id():
    candidates = [
        tech("a-slow-five-star", rating=5.0),  # 700 + 0 = 700
        tech("b-quick-four-star", rating=4.0),  # 580 + 120 = 700
        tech("d-twin", rating=5.0),  # 700
        tech("c-twin", rating=5.0),  # 700
    ]
    table = {"a-slow-five-star": 700.0, "b-quick-four-star": 580.0, "c-twin": 700.0}
    table["d-twin"] = 700.0
    ranked = evaluate(candidates, BOOKING, etas(table), DEFAULT_WEIGHTS, 0.0, NOW).ranked
    assert [r.total_s for r in ranked] == [700.0] * 4
    assert [r.technician_id for r in ranked] == [
        "b-quick-four-star",
        "a-slow-five-star",
        "c-twin",
        "d-twin",
    ]


def test_each_filter_excludes_with_its_stable_code_and_skips_the_eta():
    candidates = [
        tech("ok"),
        tech("off", online=False),
        tech("busy", free=False),
        tech("unskilled", skills=frozenset({"cleaning"})),
        tech("away", in_area=False),
        tech("resting", on_shift=False),
        tech("stale", fix_age_s=MAX_POSITION_AGE_S + 1.0),
    ]
    eta_of = etas({"ok": 300.0})
    evaluation = evaluate(candidates, BOOKING, eta_of, DEFAULT_WEIGHTS, 0.0, NOW)
    assert [r.technician_id for r in evaluation.ranked] == ["ok"]
    assert evaluation.excluded == [
        Excluded("away", Reason.OUT_OF_AREA),
        Excluded("busy", Reason.BUSY),
        Excluded("off", Reason.OFFLINE),
        Excluded("resting", Reason.OFF_SHIFT),
        Excluded("stale", Reason.STALE_POSITION),
        Excluded("unskilled", Reason.SKILLS),
    ]
    assert [e.reason.value for e in evaluation.excluded] == [
        "out_of_area",
        "busy",
        "offline",
        "off_shift",
        "stale_position",
        "skills",
    ]
    assert eta_of.calls == ["ok"]  # type: ignore[attr-defined]


def test_a_candidate_failing_several_filters_gets_the_first_reason():
    everything_wrong = tech(
        "x",
        online=False,
        free=False,
        skills=frozenset(),
        in_area=False,
        on_shift=False,
        fix_age_s=10 * MAX_POSITION_AGE_S,
    )
    busy_and_away = tech("y", free=False, in_area=False)
    away_and_stale = tech("z", in_area=False, fix_age_s=10 * MAX_POSITION_AGE_S)
    evaluation = evaluate(
        [everything_wrong, busy_and_away, away_and_stale],
        BOOKING,
        etas({}),
        DEFAULT_WEIGHTS,
        0,
        NOW,
    )
    assert [e.reason for e in evaluation.excluded] == [
        Reason.OFFLINE,
        Reason.BUSY,
        Reason.OUT_OF_AREA,
    ]


def test_position_age_boundary_and_a_fix_from_the_future():
    evaluation = evaluate(
        [
            tech("edge", fix_age_s=MAX_POSITION_AGE_S),  # exactly 15 min: still usable
            tech("ahead", fix_age_s=-5.0),  # phone clock 5 s ahead: age 0, not -5
        ],
        BOOKING,
        etas({"edge": 100.0, "ahead": 200.0}),
        DEFAULT_WEIGHTS,
        0.0,
        NOW,
    )
    ages = {r.technician_id: r.position_age_s for r in evaluation.ranked}
    assert ages == {"edge": 900.0, "ahead": 0.0}


def test_no_required_skills_admits_a_technician_with_none():
    booking = BookingFacts(*HOME)
    ranked = evaluate(
        [tech("bare", skills=frozenset())], booking, etas({"bare": 60.0}), DEFAULT_WEIGHTS, 0, NOW
    ).ranked
    assert [r.technician_id for r in ranked] == ["bare"]


def test_no_candidates_is_an_empty_evaluation():
    evaluation = evaluate([], BOOKING, etas({}), DEFAULT_WEIGHTS, 0.0, NOW)
    assert (evaluation.ranked, evaluation.excluded) == ([], [])


def test_bad_input_is_refused_with_a_message():
    with pytest.raises(ValueError, match=r"rating must be within 0\.\.5, not 5\.5"):
        tech("a", rating=5.5)
    with pytest.raises(ValueError, match=r"rating must be within 0\.\.5"):
        tech("a", rating=-0.1)
    with pytest.raises(ValueError, match=r"rating must be within 0\.\.5"):
        tech("a", rating=math.nan)
    with pytest.raises(ValueError, match="jobs_today must be >= 0"):
        tech("a", jobs_today=-1)
    with pytest.raises(ValueError, match="fix_t must be finite"):
        tech("a", fix_age_s=math.inf)
    with pytest.raises(ValueError, match="technician a is a candidate twice"):
        evaluate([tech("a"), tech("a")], BOOKING, etas({"a": 1.0}), DEFAULT_WEIGHTS, 0, NOW)
    with pytest.raises(ValueError, match="city_median_jobs must be finite and >= 0"):
        evaluate([], BOOKING, etas({}), DEFAULT_WEIGHTS, -1.0, NOW)
    with pytest.raises(ValueError, match="city_median_jobs"):
        evaluate([], BOOKING, etas({}), DEFAULT_WEIGHTS, math.nan, NOW)
    for bad_eta in (math.nan, -1.0, math.inf):
        with pytest.raises(ValueError, match="an ETA must be finite and >= 0"):
            evaluate([tech("a")], BOOKING, etas({"a": bad_eta}), DEFAULT_WEIGHTS, 0, NOW)


def test_route_eta_is_what_the_tracking_page_would_show_from_a_standing_start():
    provider = StraightLineProvider(CircuityModel())
    near = destination_point(*HOME, 90.0, 1500.0)
    far = destination_point(*HOME, 90.0, 6000.0)
    candidates = [
        Candidate(
            tid,
            lat,
            lon,
            NOW,
            frozenset({"plumbing"}),
            online=True,
            free=True,
            in_area=True,
            on_shift=True,
            rating=None,
            history=None,
            jobs_today=0,
        )
        for tid, (lat, lon) in (("far", far), ("near", near))
    ]
    eta_of = route_eta(provider, BOOKING, NOW)
    ranked = evaluate(candidates, BOOKING, eta_of, DEFAULT_WEIGHTS, 0.0, NOW).ranked
    assert [r.technician_id for r in ranked] == ["near", "far"]
    expected_distance = distance_m(*near, *HOME) * CircuityModel().factor(*HOME)
    expected = EtaEstimator(*HOME).update(Fix(t=NOW, lat=near[0], lon=near[1]), expected_distance)
    assert ranked[0].distance_m == pytest.approx(expected_distance)
    assert ranked[0].eta_s == pytest.approx(expected.seconds)
    assert ranked[0].eta_s > 0


@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 7200.0),  # eta
            st.one_of(st.none(), st.floats(0.0, 5.0)),  # rating
            st.one_of(st.none(), st.floats(0.0, 1.0)),  # history score
            st.integers(0, 12),  # jobs today
            st.booleans(),  # online
        ),
        max_size=12,
    ),
    st.floats(0.0, 8.0),
)
def test_every_candidate_is_ranked_or_excluded_once_and_totals_add_up(rows, median):
    candidates = [
        tech(f"t{n}", rating=rating, history_score=score, jobs_today=jobs, online=online)
        for n, (_, rating, score, jobs, online) in enumerate(rows)
    ]
    table = {f"t{n}": row[0] for n, row in enumerate(rows)}
    evaluation = evaluate(candidates, BOOKING, etas(table), DEFAULT_WEIGHTS, median, NOW)
    ids = [r.technician_id for r in evaluation.ranked] + [
        e.technician_id for e in evaluation.excluded
    ]
    assert sorted(ids) == sorted(table)
    keys = [(r.total_s, r.eta_s, r.technician_id) for r in evaluation.ranked]
    assert keys == sorted(keys)
    for ranked in evaluation.ranked:
        parts = ranked.components
        assert ranked.total_s == pytest.approx(
            parts.eta_s + parts.rating_s + parts.history_s + parts.fairness_s + parts.preferred_s
        )
        assert parts.rating_s >= 0 and parts.history_s >= 0 and parts.fairness_s >= 0


def test_a_batch_pair_costs_its_score_less_the_weighted_wait() -> None:
    weights = DispatchWeights(waited=0.25)
    assert batch_cost(600.0, 1200.0, weights) == 600.0 - 300.0
    assert batch_cost(600.0, -5.0, weights) == 600.0  # a clock skew is no wait
    assert batch_cost(600.0, 1200.0, DispatchWeights(waited=0.0)) == 600.0


def test_the_wait_lets_an_old_far_booking_beat_a_young_near_one_for_the_last_technician() -> None:
    # One technician, two bookings: "old" waited 40 min and is 10 min away, "young" just
    # came in, 4 min away. On scores alone the young one wins (240 < 600); with the wait
    # at 0.25 the old one costs 600 - 600 = 0 < 240 - 0 and is served.
    scores = {"old": 600.0, "young": 240.0}
    waited = {"old": 2400.0, "young": 0.0}
    plain = match(["old", "young"], ["tech"], lambda b, t: scores[b])
    assert [a.booking for a in plain.assignments] == ["young"]
    weights = DispatchWeights(waited=0.25)
    aged = match(["old", "young"], ["tech"], lambda b, t: batch_cost(scores[b], waited[b], weights))
    assert [a.booking for a in aged.assignments] == ["old"]
