"""When a new ETA is worth a frame: pure policy, no I/O (time is the fixes' time).

Every accepted fix of a technician en route yields a new estimate, and sending each one was
a third of all frames the hub sends (one ``position``, one ``eta``, one ``ack`` per fix;
the send path is the largest part of the profile, loadtest/results/profile.md). A customer
sees minutes and a band, and their page counts down between frames from the arrival time it
was given, so an estimate that moves the arrival time or the band by less than what can be
seen adds nothing. One goes out anyway every ``heartbeat_s`` (the estimate's ``t`` shows the
page it is current), and the hub keeps the newest one for snapshots whatever was sent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EtaShown:
    """What the customer was last sent: the fix time it was based on, and its times (Unix
    seconds) of arrival and of the band's edges."""

    t: float
    arrival_t: float
    low_t: float
    high_t: float
    at_door: bool = False


@dataclass(frozen=True)
class EtaThrottle:
    # Changes under this fraction of the time still to go are not sent (5 % of 10 min is
    # 30 s), nor ever under ``min_change_s``: that is below what a minutes display shows.
    share: float = 0.05
    min_change_s: float = 5.0
    heartbeat_s: float = 15.0

    def worth_sending(self, shown: EtaShown | None, new: EtaShown) -> bool:
        """Whether ``new`` should go to the customer, after ``shown`` was the last sent."""
        if shown is None or new.t - shown.t >= self.heartbeat_s or new.t < shown.t:
            return True
        if new.at_door is not shown.at_door:
            return True  # "at your door" comes and goes at once, not at the next heartbeat
        threshold = max(self.min_change_s, self.share * max(0.0, new.arrival_t - new.t))
        return (
            abs(new.arrival_t - shown.arrival_t) >= threshold
            or abs(new.low_t - shown.low_t) >= threshold
            or abs(new.high_t - shown.high_t) >= threshold
        )
