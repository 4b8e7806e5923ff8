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
