"""The soak's schedule of faults, drawn once from a seeded RNG: pure, so a run can be
replayed from its seed and the rules (at least one kill, one Redis restart, hubs never
both down) are tested without processes.

Every time is seconds after the load started; the runner fires each fault when its time
comes (``due``)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from loadtest.chaos.config import ChaosConfig

HUBS = 2
# A killed hub comes back after this long (uniform): a supervisor restarting a crashed process.
RESTART_AFTER_S = (1.0, 4.0)
# Redis is down this long (SIGTERM, then started again on the same port and data dir).
REDIS_DOWN_S = (2.0, 4.0)
# Faults happen between these fractions of the run: the start warms up, the end lets every
# client reconnect and resend before the checks.
FAULT_WINDOW = (0.1, 0.85)
REDIS_WINDOW = (0.3, 0.7)
# No kill this close to the Redis outage: the two are told apart in the figures.
REDIS_CLEARANCE_S = 5.0
# SOS presses stop this early, so every retry (60 s deadline in the SDK) ends in the settle.
SOS_WINDOW = (0.05, 0.8)


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str  # kill | restart | redis_stop | redis_start | drop | sos
    target: str = ""  # hub index, "technician:3", "customer:5", "operator:1", sos tech index
    detail: str = ""  # the SOS's client id


@dataclass(frozen=True)
class Plan:
    faults: tuple[Fault, ...]  # by time

    def of(self, kind: str) -> list[Fault]:
        return [f for f in self.faults if f.kind == kind]


def _min_gap_s(config: ChaosConfig) -> float:
    """Kills at least this far apart: the last one's hub is back (and ready) before the next,
    so the two hubs are never down together."""
    return RESTART_AFTER_S[1] + max(4.0, min(20.0, config.kill_every_s / 4))


def _kill_times(
    config: ChaosConfig, rng: random.Random, redis_at: float, redis_end: float
) -> list[float]:
    low, high = (f * config.seconds for f in FAULT_WINDOW)
    gap = _min_gap_s(config)
    times: list[float] = []
    t = low + rng.expovariate(1 / config.kill_every_s)
    while t < high:
        times.append(t)
        t += max(gap, rng.expovariate(1 / config.kill_every_s))
    clear = [
        k
        for k in times
        if not (
            redis_at - REDIS_CLEARANCE_S - RESTART_AFTER_S[1] <= k <= redis_end + REDIS_CLEARANCE_S
        )
    ]
    if not clear:
        # At least one kill, whatever the draw: before the outage if there is room, else after.
        before = redis_at - REDIS_CLEARANCE_S - RESTART_AFTER_S[1]
        clear = [
            rng.uniform(low, before) if before > low else min(high, redis_end + REDIS_CLEARANCE_S)
        ]
    return clear


def _drops(config: ChaosConfig, rng: random.Random) -> list[Fault]:
    end = FAULT_WINDOW[1] * config.seconds
    clients = [f"technician:{i}" for i in range(config.technicians)]
    clients += [f"customer:{j}" for j in range(config.customer_count)]
    clients += [f"operator:{k}" for k in range(config.operators)]
    drops = []
    for client in clients:
        t = rng.expovariate(1 / config.drop_every_s)
        while t < end:
            drops.append(Fault(t, "drop", client))
            t += rng.expovariate(1 / config.drop_every_s)
    return drops


def _sos(config: ChaosConfig, rng: random.Random) -> list[Fault]:
    low, high = (f * config.seconds for f in SOS_WINDOW)
    presses = []
    if config.sos_per_min > 0:
        t = low + rng.expovariate(config.sos_per_min / 60)
        while t < high:
            presses.append(t)
            t += rng.expovariate(config.sos_per_min / 60)
        presses = presses or [rng.uniform(low, high)]  # at least one: the check needs it
    return [
        Fault(
            t,
            "sos",
            str(rng.randrange(config.technicians)),
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        )
        for t in presses
    ]


def make_plan(config: ChaosConfig) -> Plan:
    """Every fault of the run, from ``config.seed``."""
    rng = random.Random(config.seed)
    redis_at = rng.uniform(*(f * config.seconds for f in REDIS_WINDOW))
    redis_end = redis_at + rng.uniform(*REDIS_DOWN_S)
    faults = [Fault(redis_at, "redis_stop"), Fault(redis_end, "redis_start")]
    for at in _kill_times(config, rng, redis_at, redis_end):
        hub = str(rng.randrange(HUBS))
        faults.append(Fault(at, "kill", hub))
        faults.append(Fault(at + rng.uniform(*RESTART_AFTER_S), "restart", hub))
    faults += _drops(config, rng)
    faults += _sos(config, rng)
    return Plan(tuple(sorted(faults, key=lambda f: (f.at_s, f.kind, f.target))))


def due(faults: Sequence[Fault], cursor: int, elapsed_s: float) -> tuple[list[Fault], int]:
    """The faults whose time has come since ``cursor``, and the new cursor."""
    end = cursor
    while end < len(faults) and faults[end].at_s <= elapsed_s:
        end += 1
    return list(faults[cursor:end]), end
