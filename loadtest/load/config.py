"""The options of a load run and the pure plan of who does what, when.

Everything random is drawn here from a fixed seed, so two targets in one ``--compare`` run
get the very same load: the same technicians drop at the same moments, the same SOS
presses happen at the same offsets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MAX_SECONDS = 600.0  # the hard bound on one run's streaming time
DROPOUT_S = 3.0  # how long a dropped technician stays away (at most a quarter of the run)


@dataclass(frozen=True)
class LoadConfig:
    """The command's options (``doorstep loadtest --help`` says what each means)."""

    technicians: int = 100
    customers: int | None = None  # None: one per booking
    operators: int = 2
    rate_hz: float = 1.0
    seconds: float = 30.0
    sos_per_min: float = 2.0
    dropout: float = 0.05
    processes: int = 2
    seed: int = 0
    server: str = "uvicorn"  # what serves the hub: "uvicorn" (doorstep serve) or "granian"

    @property
    def customer_count(self) -> int:
        return self.technicians if self.customers is None else self.customers

    @property
    def fixes_per_technician(self) -> int:
        return max(1, int(self.rate_hz * self.seconds))


@dataclass(frozen=True)
class Dropout:
    """A technician's gap: offline from ``at_s`` for ``length_s``, then one batch."""

    at_s: float
    length_s: float


@dataclass(frozen=True)
class SosPress:
    at_s: float
    technician: int  # global index
    client_id: str


@dataclass
class Slice:
    """One generator process's share: technicians, the customers of their bookings, operators."""

    technicians: list[int] = field(default_factory=list)  # global indices
    customers: list[int] = field(default_factory=list)  # the technician (booking) each watches
    operators: list[int] = field(default_factory=list)
    dropouts: dict[int, Dropout] = field(default_factory=dict)
    sos: list[SosPress] = field(default_factory=list)


def dropouts(config: LoadConfig) -> dict[int, Dropout]:
    """Which technicians drop once, and when (inside the middle of the run)."""
    rng = random.Random(config.seed)
    count = round(config.dropout * config.technicians)
    chosen = rng.sample(range(config.technicians), min(count, config.technicians))
    length = min(DROPOUT_S, config.seconds / 4)
    return {
        n: Dropout(at_s=rng.uniform(0.2, 0.6) * config.seconds, length_s=length)
        for n in sorted(chosen)
    }


def sos_presses(config: LoadConfig, run_tag: str, skip: set[int]) -> list[SosPress]:
    """SOS presses spread evenly at ``sos_per_min`` across the fleet, by technicians that
    do not drop out (an SOS while offline would go over HTTP, not measured here)."""
    per_s = config.sos_per_min / 60
    if per_s <= 0:
        return []
    candidates = [n for n in range(config.technicians) if n not in skip] or [0]
    rng = random.Random(config.seed + 1)
    presses = []
    k = 0
    while (at := (k + 0.5) / per_s) < config.seconds * 0.8:
        technician = rng.choice(candidates)
        presses.append(SosPress(at_s=at, technician=technician, client_id=f"{run_tag}-sos-{k}"))
        k += 1
    return presses


def slices(config: LoadConfig, run_tag: str) -> list[Slice]:
    """Split the load over ``processes``: technicians round-robin, each customer in the
    process of the technician it watches (so batched fixes can be left out of latency)."""
    count = max(1, min(config.processes, config.technicians))
    out = [Slice() for _ in range(count)]
    drops = dropouts(config)
    for n in range(config.technicians):
        part = out[n % count]
        part.technicians.append(n)
        if n in drops:
            part.dropouts[n] = drops[n]
    for k in range(config.customer_count):
        booking = k % config.technicians
        out[booking % count].customers.append(booking)
    for j in range(config.operators):
        out[j % count].operators.append(j)
    for press in sos_presses(config, run_tag, set(drops)):
        out[press.technician % count].sos.append(press)
    return out
