"""The chaos soak's fault schedule (loadtest/chaos/plan.py): seeded, and it keeps its rules."""

from __future__ import annotations

import pytest

from loadtest.chaos.config import ChaosConfig
from loadtest.chaos.plan import (
    FAULT_WINDOW,
    REDIS_CLEARANCE_S,
    RESTART_AFTER_S,
    due,
    make_plan,
)

SHORT = ChaosConfig(seconds=25, technicians=10, kill_every_s=8, drop_every_s=15, sos_per_min=12)
CONFIGS = [ChaosConfig(), SHORT, ChaosConfig(seconds=60, kill_every_s=1000, sos_per_min=0.01)]


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert make_plan(SHORT) == make_plan(SHORT)
    assert make_plan(SHORT) != make_plan(ChaosConfig(**{**SHORT.__dict__, "seed": 1}))


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "short", "rare-kills"])
@pytest.mark.parametrize("seed", range(20))
def test_every_plan_kills_restarts_and_restarts_redis_once(config: ChaosConfig, seed: int) -> None:
    plan = make_plan(ChaosConfig(**{**config.__dict__, "seed": seed}))
    kills, restarts = plan.of("kill"), plan.of("restart")
    assert kills, "at least one kill -9, whatever the draw"
    assert len(restarts) == len(kills)
    for kill, restart in zip(kills, restarts, strict=True):
        assert restart.target == kill.target
        assert RESTART_AFTER_S[0] <= restart.at_s - kill.at_s <= RESTART_AFTER_S[1]
    # Never both hubs down: each killed hub is back before the next kill.
    for restart, next_kill in zip(restarts, kills[1:], strict=False):
        assert next_kill.at_s > restart.at_s
    (stop,), (start,) = plan.of("redis_stop"), plan.of("redis_start")
    assert stop.at_s < start.at_s
    for kill, restart in zip(kills, restarts, strict=True):
        assert restart.at_s < stop.at_s - REDIS_CLEARANCE_S or kill.at_s > start.at_s
    low, high = (f * config.seconds for f in FAULT_WINDOW)
    assert all(low <= f.at_s <= high for f in kills)
    presses = plan.of("sos")
    assert presses and len({p.detail for p in presses}) == len(presses)
    assert [f.at_s for f in plan.faults] == sorted(f.at_s for f in plan.faults)


def test_drops_come_for_every_kind_of_client() -> None:
    targets = {f.target.split(":")[0] for f in make_plan(SHORT).of("drop")}
    assert targets == {"technician", "customer", "operator"}


def test_due_hands_out_each_fault_once_in_time_order() -> None:
    faults = make_plan(SHORT).faults
    seen, cursor = [], 0
    for tick in range(0, 30):
        fired, cursor = due(faults, cursor, float(tick))
        assert all(f.at_s <= tick for f in fired)
        seen += fired
    assert seen == list(faults)
