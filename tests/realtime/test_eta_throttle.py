"""Which estimates are worth a frame (realtime/eta_throttle.py)."""

from __future__ import annotations

from realtime.eta_throttle import EtaShown, EtaThrottle

THROTTLE = EtaThrottle(share=0.05, min_change_s=5.0, heartbeat_s=15.0)


def eta(t: float, seconds: float, band: float = 60.0) -> EtaShown:
    return EtaShown(t=t, arrival_t=t + seconds, low_t=t + seconds - band, high_t=t + seconds + band)


def test_the_first_estimate_is_always_sent() -> None:
    assert THROTTLE.worth_sending(None, eta(0, 600))


def test_a_steady_estimate_waits_for_the_heartbeat() -> None:
    shown = eta(0, 600)
    # The technician keeps to the estimate: the arrival time does not move.
    assert not THROTTLE.worth_sending(shown, eta(1, 599))
    assert not THROTTLE.worth_sending(shown, eta(14.9, 585.1))
    assert THROTTLE.worth_sending(shown, eta(15, 585))


def test_a_visible_change_goes_at_once_scaled_to_the_time_left() -> None:
    # 10 min to go: 5 % is 30 s; a 20 s slip is not shown, a 40 s one is.
    assert not THROTTLE.worth_sending(eta(0, 600), eta(1, 619))
    assert THROTTLE.worth_sending(eta(0, 600), eta(1, 639))
    # A minute to go: 5 s is the floor.
    assert THROTTLE.worth_sending(eta(0, 60), eta(1, 65))
    assert not THROTTLE.worth_sending(eta(0, 60), eta(1, 62))


def test_a_band_that_widens_or_narrows_is_shown() -> None:
    assert THROTTLE.worth_sending(eta(0, 600, band=60), eta(1, 599, band=120))
    assert not THROTTLE.worth_sending(eta(0, 600, band=60), eta(1, 599, band=70))


def test_an_estimate_from_an_older_fix_restarts_the_sequence() -> None:
    assert THROTTLE.worth_sending(eta(100, 600), eta(50, 650))
