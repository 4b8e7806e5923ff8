"""A technician's history score: rates over the last 200 visits, shrunk towards a prior."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.history_score import (
    PRIOR_SCORE,
    WINDOW_VISITS,
    HistoryScore,
    Outcome,
    VisitRecord,
    history_score,
    jobs_today,
)

T0 = 1_700_000_000.0


def visit(
    n: int,
    outcome: Outcome = Outcome.COMPLETED,
    *,
    window_end_t: float | None = None,
    arrived_t: float | None = None,
    ended_t: float | None = None,
) -> VisitRecord:
    return VisitRecord(
        booking_id=f"b{n}",
        outcome=outcome,
        window_end_t=window_end_t,
        arrived_t=arrived_t,
        ended_t=T0 + 3600.0 * n if ended_t is None else ended_t,
    )


def on_time(n: int) -> VisitRecord:
    end = T0 + 3600.0 * n
    return visit(n, window_end_t=end - 1800.0, arrived_t=end - 2400.0, ended_t=end)


def late(n: int) -> VisitRecord:
    end = T0 + 3600.0 * n
    return visit(n, window_end_t=end - 1800.0, arrived_t=end - 1700.0, ended_t=end)


def test_no_visits_is_the_prior_and_no_rates():
    assert history_score([]) == HistoryScore(
        visits=0, completion_rate=None, on_time_rate=None, cancellations=0, score=0.9
    )
    assert PRIOR_SCORE == 0.9


def test_a_newcomer_with_one_perfect_visit_moves_only_a_little():
    # completion' = (1 + 9) / (1 + 10) = 10/11; on_time' = (1 + 9) / 11 = 10/11
    # score = (2 x 10/11 + 10/11) / 3 = 10/11 = 0.90909...
    score = history_score([on_time(1)])
    assert score.completion_rate == 1.0
    assert score.on_time_rate == 1.0
    assert score.score == pytest.approx(10 / 11)
    assert 0.9 < score.score < 0.91


def test_a_newcomer_with_one_cancellation_moves_only_a_little():
    # completion' = (0 + 9) / 11 = 9/11; no timed visit: on_time' = 9/10
    # score = (2 x 9/11 + 0.9) / 3 = (18/11 + 0.9) / 3 = 0.84545...
    score = history_score([visit(1, Outcome.CANCELLED_BY_TECHNICIAN)])
    assert score.completion_rate == 0.0
    assert score.on_time_rate is None
    assert score.cancellations == 1
    assert score.score == pytest.approx((18 / 11 + 0.9) / 3)


def test_a_long_good_record_beats_a_newcomer_and_a_long_bad_one_is_below():
    good = history_score([on_time(n) for n in range(200)])
    # (2 x 209/210 + 209/210) / 3 = 209/210
    assert good.score == pytest.approx(209 / 210)
    bad = history_score(
        [visit(n, Outcome.NO_SHOW) for n in range(100)] + [late(n) for n in range(100, 200)]
    )
    # completion: 100 of 200 -> (100 + 9) / 210; on time: 0 of 100 -> 9 / 110
    assert bad.completion_rate == 0.5
    assert bad.on_time_rate == 0.0
    assert bad.score == pytest.approx((2 * 109 / 210 + 9 / 110) / 3)
    assert bad.score < history_score([]).score < good.score


def test_cancelled_by_others_counts_as_a_visit_but_not_against_the_technician():
    records = [on_time(1), visit(2, Outcome.CANCELLED_OTHER), visit(3, Outcome.CANCELLED_OTHER)]
    score = history_score(records)
    assert score.visits == 3
    assert score.completion_rate == 1.0  # 1 of 1 accountable
    assert score.cancellations == 0
    assert score.score == pytest.approx(10 / 11)


def test_no_show_counts_against_completion_but_is_not_a_cancellation():
    # 1 completed, 1 no-show: completion 1/2, (1 + 9) / 12 shrunk
    score = history_score([visit(1), visit(2, Outcome.NO_SHOW)])
    assert score.completion_rate == 0.5
    assert score.cancellations == 0
    assert score.score == pytest.approx((2 * 10 / 12 + 0.9) / 3)


def test_on_time_counts_only_visits_with_a_window_and_an_arrival():
    records = [
        on_time(1),
        late(2),
        visit(3, window_end_t=T0, arrived_t=None),  # never arrived: not timed
        visit(4, window_end_t=None, arrived_t=T0),  # no window promised: not timed
    ]
    score = history_score(records)
    assert score.on_time_rate == 0.5
    # completion 4/4 -> 13/14; on time 1/2 -> 10/12
    assert score.score == pytest.approx((2 * 13 / 14 + 10 / 12) / 3)


def test_arriving_exactly_at_the_window_end_is_on_time():
    end = T0 + 7200.0
    exact = visit(1, window_end_t=end - 600.0, arrived_t=end - 600.0, ended_t=end)
    assert history_score([exact]).on_time_rate == 1.0


def test_only_the_last_200_visits_by_end_time_count_whatever_the_input_order():
    old_failures = [visit(n, Outcome.CANCELLED_BY_TECHNICIAN) for n in range(50)]
    recent = [visit(n) for n in range(50, 250)]
    score = history_score(list(reversed(recent)) + old_failures)
    assert WINDOW_VISITS == 200
    assert score.visits == 200
    assert score.cancellations == 0
    assert score.completion_rate == 1.0
    # One visit more than the window: the oldest (a cancellation) drops out.
    assert history_score([visit(0, Outcome.CANCELLED_BY_TECHNICIAN), *recent]).cancellations == 0
    assert history_score([visit(0, Outcome.CANCELLED_BY_TECHNICIAN), *recent[:-1]]).visits == 200
    assert (
        history_score([visit(0, Outcome.CANCELLED_BY_TECHNICIAN), *recent[:-1]]).cancellations == 1
    )


def test_plain_strings_from_the_store_work_like_the_enum():
    record = VisitRecord("b1", "cancelled_by_technician", None, None, T0)  # type: ignore[arg-type]
    assert history_score([record]).cancellations == 1


def test_bad_records_are_refused_with_a_message():
    with pytest.raises(ValueError, match="outcome must be one of"):
        VisitRecord("b1", "lost", None, None, T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ended_t must be finite"):
        VisitRecord("b1", Outcome.COMPLETED, None, None, float("nan"))
    with pytest.raises(ValueError, match="b1 appears twice"):
        history_score([visit(1), visit(1, ended_t=T0)])


@given(
    st.lists(st.tuples(st.sampled_from(list(Outcome)), st.booleans(), st.booleans()), max_size=260)
)
def test_the_score_stays_within_0_and_1_and_rates_within_their_bounds(rows):
    records = [
        visit(
            n,
            outcome,
            window_end_t=T0 + 3600.0 * n - 1800.0,
            arrived_t=(T0 + 3600.0 * n - (2400.0 if punctual else 1000.0)) if arrived else None,
        )
        for n, (outcome, arrived, punctual) in enumerate(rows)
    ]
    score = history_score(records)
    assert 0.0 < score.score < 1.0
    assert score.visits == min(len(rows), 200)
    for rate in (score.completion_rate, score.on_time_rate):
        assert rate is None or 0.0 <= rate <= 1.0


# --- jobs today ----------------------------------------------------------------------------

AUCKLAND = ZoneInfo("Pacific/Auckland")  # UTC+13 in (southern) summer


def at(zone: ZoneInfo, *fields: int) -> float:
    return datetime(*fields, tzinfo=zone).timestamp()


def test_jobs_today_counts_from_the_citys_midnight_not_utcs():
    # 2025-01-15 09:00 in Auckland is 2025-01-14 20:00 UTC.
    now = at(AUCKLAND, 2025, 1, 15, 9, 0)
    records = [
        visit(1, ended_t=at(AUCKLAND, 2025, 1, 14, 23, 59)),  # yesterday in Auckland
        visit(2, ended_t=at(AUCKLAND, 2025, 1, 15, 0, 0)),  # midnight: today
        visit(3, ended_t=at(AUCKLAND, 2025, 1, 15, 8, 30)),  # today
        visit(4, Outcome.CANCELLED_OTHER, ended_t=at(AUCKLAND, 2025, 1, 15, 8, 45)),
        visit(5, ended_t=at(AUCKLAND, 2025, 1, 15, 9, 30)),  # after now: not yet
    ]
    assert jobs_today(records, now, AUCKLAND) == 3
    # The UTC day began at 13:00 Auckland time on the 14th, so UTC would count 1, 2, 3, 4 too
    # and the one at 23:59 the day before: 4 jobs. The city's day is what counts.
    assert jobs_today(records, now, ZoneInfo("UTC")) == 4


def test_jobs_today_on_a_day_whose_midnight_is_skipped_by_dst():
    # Santiago sprang forward at 2024-09-08 00:00 -> 01:00: the day starts at 01:00 local,
    # which is 04:00 UTC (the instant that was midnight at UTC-4).
    santiago = ZoneInfo("America/Santiago")
    now = at(santiago, 2024, 9, 8, 10, 0)
    day_start = datetime(2024, 9, 8, 4, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    records = [visit(1, ended_t=day_start - 1.0), visit(2, ended_t=day_start)]
    assert jobs_today(records, now, santiago) == 1


def test_jobs_today_with_no_records_is_zero_and_bad_now_is_refused():
    assert jobs_today([], T0, AUCKLAND) == 0
    with pytest.raises(ValueError, match="now must be finite"):
        jobs_today([], float("inf"), AUCKLAND)
