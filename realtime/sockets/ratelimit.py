"""Per-connection rate limit and flood detection (pure: time is passed in)."""

from __future__ import annotations

from collections import deque
from enum import Enum


class Verdict(Enum):
    ACCEPT = "accept"
    REFUSE = "refuse"  # answer rate_limited, keep the connection
    DISCONNECT = "disconnect"  # a flood: close with 1008


class FloodGuard:
    """Token bucket (``rate`` frames/s, ``burst`` deep) plus a count of recent refusals.

    Refusing a frame still costs the hub an error frame, so a client that ignores the
    refusals and keeps sending is disconnected once ``max_refused`` frames were refused
    within ``window_s``.
    """

    def __init__(self, rate: float, burst: int, max_refused: int, window_s: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_refused = max_refused
        self.window_s = window_s
        self._tokens = float(burst)
        self._last: float | None = None
        self._refused: deque[float] = deque()

    def check(self, now: float) -> Verdict:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return Verdict.ACCEPT
        self._refused.append(now)
        while self._refused and self._refused[0] < now - self.window_s:
            self._refused.popleft()
        if len(self._refused) >= self.max_refused:
            return Verdict.DISCONNECT
        return Verdict.REFUSE


class Pacer:
    """Back-pressure for streams whose frames must not be dropped (technician fixes).

    The same token bucket (``rate`` frames/s, ``burst`` deep), but a frame over the rate is
    *delayed* instead of refused: ``admit`` says when it may be processed. The tokens may go
    negative; the deficit over the rate is the delay, so frames come out at ``rate`` in the
    order they came in. Only a client whose backlog would wait longer than ``max_delay_s``
    is a flood (``admit`` returns None): nothing it sent after the frames already processed
    is acknowledged, so closing it loses nothing it was told was stored.
    """

    def __init__(self, rate: float, burst: int, max_delay_s: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_delay_s = max_delay_s
        self._tokens = float(burst)
        self._last: float | None = None

    def admit(self, now: float) -> float | None:
        """The time (same clock as ``now``) the frame may be processed; None for a flood."""
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        delay = max(0.0, (1.0 - self._tokens) / self.rate)
        if delay > self.max_delay_s:
            return None  # not charged: the connection is closed
        self._tokens -= 1.0
        return now + delay
