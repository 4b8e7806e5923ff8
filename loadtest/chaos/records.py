"""What the soak's clients and probes recorded: plain data, written by the fleet and the
runner, read by the pure checks (which the unit tests feed by hand)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ack:
    """One ``ack {seq}`` a technician received on its ``connection``-th connection; the first
    of each connection (``resume``) says what the hub had stored before it."""

    connection: int
    seq: int
    resume: bool


@dataclass
class TechRecord:
    technician_id: str
    booking_id: str
    stamps: dict[int, float] = field(default_factory=dict)  # seq -> the fix's t
    parked_from_t: float = 0.0  # stamp from which the technician is parked at the door
    acks: list[Ack] = field(default_factory=list)
    hubs: dict[int, str] = field(default_factory=dict)  # connection -> hub process ("hub-a#2")
    acked_seq: int = -1  # the SDK's final view: everything up to here is stored
    unacked: int = 0  # still buffered when the soak ended
    dropped: int = 0  # lost to a full offline buffer (the SDK's own figure)
    rejected: int = 0  # refused by the hub for good
    connections: int = 0


@dataclass
class SosRecord:
    client_id: str
    technician_id: str
    pressed_s: float  # seconds into the run
    incident: str | None = None  # from the sos_ack (None: never acknowledged)
    via: str | None = None  # socket | http
    ack_after_s: float | None = None
    error: str | None = None


@dataclass
class ConsoleRecord:
    """One operator console: the incident ids it was told of, live or in a snapshot."""

    name: str
    raised: Counter[str] = field(default_factory=Counter)  # live "raised" messages per id
    in_snapshot: set[str] = field(default_factory=set)
    connections: int = 0


@dataclass(frozen=True)
class RssSample:
    series: str  # hub name and life, "hub-a#2": a restarted hub is a new series
    t_s: float  # seconds since this process started
    run_s: float  # seconds into the run
    rss: int  # bytes
    connections: int = 0  # open through the balancer to this process at the time
