"""The per-connection token bucket and flood detection (pure, time passed in)."""

import pytest

from realtime.sockets.ratelimit import FloodGuard, Pacer, Verdict


def test_burst_then_refuse_then_refill():
    guard = FloodGuard(rate=10, burst=3, max_refused=100, window_s=10)
    assert [guard.check(0.0) for _ in range(4)] == [Verdict.ACCEPT] * 3 + [Verdict.REFUSE]
    assert guard.check(0.1) is Verdict.ACCEPT  # 0.1 s at 10/s refills one token


def test_steady_rate_under_the_limit_is_never_refused():
    guard = FloodGuard(rate=5, burst=1, max_refused=3, window_s=10)
    assert all(guard.check(i * 0.25) is Verdict.ACCEPT for i in range(100))


def test_persistent_flood_disconnects():
    guard = FloodGuard(rate=1, burst=1, max_refused=5, window_s=10)
    verdicts = [guard.check(0.0) for _ in range(6)]
    assert verdicts == [Verdict.ACCEPT] + [Verdict.REFUSE] * 4 + [Verdict.DISCONNECT]


def test_refusals_spread_over_time_do_not_disconnect():
    guard = FloodGuard(rate=1, burst=1, max_refused=5, window_s=10)
    t = 0.0
    for _ in range(50):
        assert guard.check(t) is Verdict.ACCEPT
        assert guard.check(t) is Verdict.REFUSE  # one refusal every 5 s: never a flood
        t += 5.0


# ------------------------------------------------------------------ back-pressure (Pacer)


def test_pacer_lets_the_burst_through_then_spaces_frames_at_the_rate():
    pacer = Pacer(rate=10, burst=3, max_delay_s=10)
    due = [pacer.admit(0.0) for _ in range(6)]
    assert due[:3] == [0.0, 0.0, 0.0]
    assert due[3:] == pytest.approx([0.1, 0.2, 0.3])


def test_pacer_never_delays_a_steady_client_under_the_rate():
    pacer = Pacer(rate=5, burst=1, max_delay_s=1)
    assert all(pacer.admit(i * 0.25) == i * 0.25 for i in range(100))


def test_pacer_calls_a_backlog_over_the_bound_a_flood_without_charging_it():
    pacer = Pacer(rate=1, burst=1, max_delay_s=3)
    due = [pacer.admit(0.0) for _ in range(6)]
    assert due == [0.0, 1.0, 2.0, 3.0, None, None]
    # Waiting pays the debt back: a second later there is room for one more.
    assert pacer.admit(1.0) == 4.0


def test_pacer_due_times_never_go_backwards():
    import random

    rng = random.Random(3)
    pacer = Pacer(rate=20, burst=60, max_delay_s=10)
    now, last = 0.0, 0.0
    for _ in range(5000):
        now += rng.expovariate(40)  # twice the rate on average
        due = pacer.admit(now)
        if due is None:
            continue
        assert due >= now and due >= last - 1e-9
        last = due
