"""The options of one chaos soak; ``doorstep loadtest --help`` says what each means."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChaosConfig:
    seconds: float = 600.0
    technicians: int = 100
    customers: int | None = None  # None: one per booking
    operators_per_hub: int = 2
    rate_hz: float = 1.0
    sos_per_min: float = 6.0
    # Mean seconds between kill -9s of a random hub (exponential gaps, at least MIN_GAP_S).
    # Two minutes: a technician parked at the door must stay on one hub process for the 120 s
    # check-in dwell (it lives in the memory of the hub receiving the fixes), and with a kill
    # every two minutes nearly all still get such a stretch; see checks.check_checkins.
    kill_every_s: float = 120.0
    # Mean seconds between forced drops of one client (each client its own exponential gaps).
    drop_every_s: float = 180.0
    # Trip seconds per real second: 1 is real time; the smoke test compresses (fixes are
    # stamped in the past, never ahead of the clock, see trips.py).
    time_scale: float = 1.0
    # RSS: seconds of each hub process's life ignored as warm-up, and the slope bound.
    warmup_s: float = 120.0
    rss_bound_mib_per_min: float = 1.0
    # How long to wait after the load for buffered fixes and SOS retries to land.
    settle_s: float = 30.0
    seed: int = 0

    @property
    def customer_count(self) -> int:
        return self.technicians if self.customers is None else self.customers

    @property
    def operators(self) -> int:
        return 2 * self.operators_per_hub

    @property
    def rss_min_judged_s(self) -> float:
        """The least a hub process's judged RSS series must span: a minute, less in short runs."""
        return min(60.0, max(5.0, self.seconds / 4))

    @property
    def rss_settle_s(self) -> float:
        """Left out after each fault: the reconnects and the catch-up after it (12 s in a
        10-minute soak, half a second in the 25 s smoke test)."""
        return min(15.0, self.seconds / 50)
