"""What one run measured, as plain data: filled by the driver, read by the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    """The server once a second: wall time, CPU seconds so far, RSS, hub counters."""

    t: float
    cpu_s: float | None
    rss: int | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class RunData:
    """Everything measured in one run, before it is turned into the report."""

    target: str
    round: int
    started_here: bool
    start: float = 0.0
    rss_idle: int | None = None
    rss_connected: int | None = None
    sockets: int = 0
    samples: list[Sample] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
