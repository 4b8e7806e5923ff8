"""Scoring the ETAs a customer was shown against the real arrival (realtime/eta_accuracy.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from realtime.eta_accuracy import MAX_KEPT, EtaScore, ShownEta, ShownEtas, horizon_of, score


def eta(t: float, arrival_t: float, low_t: float | None = None, high_t: float | None = None):
    return ShownEta(
        t=t,
        arrival_t=arrival_t,
        low_t=arrival_t - 60 if low_t is None else low_t,
        high_t=arrival_t + 60 if high_t is None else high_t,
    )


def test_horizon_bands_and_their_edges() -> None:
    assert horizon_of(0.0) == "0-5m"
    assert horizon_of(299.9) == "0-5m"
    assert horizon_of(300.0) == "5-15m"  # an edge belongs to the band above
    assert horizon_of(899.0) == "5-15m"
    assert horizon_of(900.0) == "15m+"
    assert horizon_of(7200.0) == "15m+"


def test_each_shown_eta_is_scored_against_the_real_arrival() -> None:
    arrived = 1000.0
    shown = [
        eta(400.0, 1100.0),  # 600 s out, said 100 s late; range 1040..1160 misses
        eta(800.0, 990.0),  # 200 s out, 10 s early; range 930..1050 holds
        eta(950.0, 940.0, low_t=940.0, high_t=1000.0),  # the high edge itself: held
        eta(1001.0, 1001.0),  # based on a fix after the arrival: left out
    ]
    assert score(shown, arrived) == [
        EtaScore(horizon="5-15m", error_s=100.0, held=False),
        EtaScore(horizon="0-5m", error_s=10.0, held=True),
        EtaScore(horizon="0-5m", error_s=60.0, held=True),
    ]


def test_nothing_shown_scores_nothing() -> None:
    assert score([], 1000.0) == []
    assert ShownEtas().score(1000.0) == []


def test_one_shown_eta_kept_per_30_seconds() -> None:
    shown = ShownEtas()
    for t in (0.0, 15.0, 29.9, 30.0, 45.0, 61.0, 90.0):
        shown.shown(eta(t, 500.0))
    # Kept: 0 (first), 30 (30 s after 0), 61 (31 s after 30); 90 is 29 s after 61.
    assert [s.error_s for s in shown.score(500.0)] == [0.0, 0.0, 0.0]
    assert len(shown) == 3


def test_a_clock_step_back_starts_the_spacing_again() -> None:
    shown = ShownEtas()
    shown.shown(eta(100.0, 500.0))
    shown.shown(eta(50.0, 500.0))  # earlier than the last kept: kept, spacing from here
    shown.shown(eta(70.0, 500.0))  # 20 s after: not kept
    assert len(shown) == 2


def test_a_long_approach_keeps_only_the_latest() -> None:
    shown = ShownEtas()
    for i in range(MAX_KEPT + 10):
        shown.shown(eta(30.0 * i, 30.0 * (MAX_KEPT + 10)))
    kept = shown.score(30.0 * (MAX_KEPT + 10))
    assert len(kept) == MAX_KEPT
    assert kept[0].error_s == 0.0


@given(
    st.lists(
        st.tuples(
            st.floats(0, 10_000), st.floats(-3600, 3600), st.floats(0, 600), st.floats(0, 600)
        ),
        max_size=30,
    ),
    st.floats(0, 10_000),
)
def test_scores_are_non_negative_and_held_means_inside(rows, arrived) -> None:
    shown = [ShownEta(t, t + 1 + abs(d), t + 1 + abs(d) - lo, t + 1 + abs(d) + hi)
             for t, d, lo, hi in rows]  # fmt: skip
    scores = score(shown, arrived)
    assert len(scores) == sum(1 for s in shown if s.t <= arrived)
    inside = [s for s in shown if s.t <= arrived]
    for one, scored in zip(inside, scores, strict=True):
        assert scored.error_s >= 0
        assert scored.held == (one.low_t <= arrived <= one.high_t)
