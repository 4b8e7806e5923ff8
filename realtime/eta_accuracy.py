"""How right the ETAs a customer was shown turned out to be, scored at the arrival. Pure.

The dashboard's ETA accuracy is about what customers saw (the ``eta`` frames sent, after
the throttle), not about every internal estimate: each shown arrival time and range is
compared with the real arrival (the fence crossing) once it is known. Shown ETAs are kept
one per ``SAMPLE_EVERY_S`` of the approach, as the learned error bands sample them
(``geofence/eta_band.py``): a trip whose ETA sat wrong for ten minutes weighs ten minutes'
worth, and a long trip costs a bounded, small list (``MAX_KEPT``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import msgspec

# One shown ETA kept per this many seconds of an approach (the error bands' own spacing).
SAMPLE_EVERY_S = 30.0
# Two hours of approach at one per 30 s; older ones make way (a trip that long is rare and
# its last two hours are the part a customer waited through).
MAX_KEPT = 240
# Horizon bands (seconds still to go until the real arrival, upper edges): a 2-minute ETA
# and a 20-minute ETA are not expected to be equally right.
HORIZONS: tuple[tuple[float, str], ...] = ((300.0, "0-5m"), (900.0, "5-15m"))
LONGEST_HORIZON = "15m+"


class ShownEta(msgspec.Struct, frozen=True):
    """One ETA a customer was sent: the fix time it was based on, and (Unix seconds) the
    arrival time and the range's edges it showed."""

    t: float
    arrival_t: float
    low_t: float
    high_t: float


class EtaScore(msgspec.Struct, frozen=True):
    horizon: str
    error_s: float  # |shown arrival time - real arrival|
    held: bool  # the real arrival fell inside the shown range (edges included)


def horizon_of(seconds_to_go: float) -> str:
    """The horizon band of an ETA shown ``seconds_to_go`` before the real arrival."""
    for upper, name in HORIZONS:
        if seconds_to_go < upper:
            return name
    return LONGEST_HORIZON


class ShownEtas:
    """The shown ETAs of one approach, sampled in time (see the module docstring)."""

    def __init__(self) -> None:
        self._kept: deque[ShownEta] = deque(maxlen=MAX_KEPT)

    def shown(self, eta: ShownEta) -> None:
        """Note an ETA the customer was sent; kept if ``SAMPLE_EVERY_S`` passed since the
        last kept one (or it is the first, or the fix clock stepped back)."""
        last = self._kept[-1] if self._kept else None
        if last is None or eta.t - last.t >= SAMPLE_EVERY_S or eta.t < last.t:
            self._kept.append(eta)

    def __len__(self) -> int:
        return len(self._kept)

    def score(self, arrived_t: float) -> list[EtaScore]:
        """Each kept ETA against the real arrival at ``arrived_t``."""
        return score(self._kept, arrived_t)


def score(shown: Iterable[ShownEta], arrived_t: float) -> list[EtaScore]:
    """Each shown ETA against the real arrival; ETAs based on a fix after it are left out
    (a late fix of the approach delivered after the crossing says nothing of the wait)."""
    return [
        EtaScore(
            horizon=horizon_of(arrived_t - eta.t),
            error_s=abs(eta.arrival_t - arrived_t),
            held=eta.low_t <= arrived_t <= eta.high_t,
        )
        for eta in shown
        if eta.t <= arrived_t
    ]
