"""The per-connection token bucket and flood detection (pure, time passed in)."""

from realtime.ratelimit import FloodGuard, Verdict


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
