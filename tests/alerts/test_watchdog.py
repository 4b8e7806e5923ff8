"""The visit watchdog: pure decisions from (watch, visit, config, now)."""

from __future__ import annotations

import msgspec
import pytest

from alerts.watchdog import (
    DecisionKind,
    UnknownCheck,
    Visit,
    Watch,
    WatchdogConfig,
    answer_ok,
    evaluate,
    knows,
    new_watch,
    next_check_t,
)

T0 = 10_000.0  # arrival
CONFIG = WatchdogConfig()  # margin 900, timeout 120, recheck 900, signal lost 600
DUE = T0 + 3600 + 900  # a one-hour visit: first "are you OK?" 15 min after it should end


def visit(last_fix_t: float | None = None, **changes: object) -> Visit:
    values: dict[str, object] = {
        "booking_id": "b1",
        "technician_id": "tech-1",
        "arrived_t": T0,
        "expected_duration_s": 3600.0,
        "last_fix_t": last_fix_t,
    }
    values.update(changes)
    return Visit(**values)  # type: ignore[arg-type]


def run(
    watch: Watch, times: list[float], config: WatchdogConfig = CONFIG, **fix: float | None
) -> tuple[Watch, list[tuple[float, DecisionKind, str]]]:
    """Evaluate at each time in turn, as the hub's ticks do; the decisions with their times."""
    seen = []
    for now in times:
        watch, decisions = evaluate(watch, visit(**fix), config, now)
        seen.extend((now, d.kind, d.key) for d in decisions)
    return watch, seen


def restart(watch: Watch) -> Watch:
    """What a hub restart does to a watch: stored as JSON, read back."""
    return msgspec.json.decode(msgspec.json.encode(watch), type=Watch)


def fresh() -> Watch:
    return new_watch(visit())


# -- overdue ---------------------------------------------------------------------------------


def test_defaults_are_the_documented_ones():
    assert (
        CONFIG.overdue_margin_s,
        CONFIG.check_timeout_s,
        CONFIG.recheck_after_ok_s,
        CONFIG.signal_lost_s,
    ) == (900.0, 120.0, 900.0, 600.0)


def test_nothing_happens_before_the_expected_end_plus_the_margin():
    watch, seen = run(fresh(), [T0, T0 + 3600, DUE - 1], last_fix_t=DUE)
    assert seen == [] and watch == fresh()


def test_an_overdue_visit_prompts_once_with_an_id_and_an_answer_by_time():
    watch, decisions = evaluate(fresh(), visit(last_fix_t=DUE), CONFIG, DUE + 3)
    assert [(d.kind, d.key, d.answer_by, d.t) for d in decisions] == [
        (DecisionKind.PROMPT, "b1:check:1", DUE + 3 + 120, DUE + 3)
    ]
    assert watch.check is not None and watch.check.id == "b1:check:1"
    _, again = run(watch, [DUE + 10, DUE + 60], last_fix_t=DUE + 60)
    assert again == []  # still waiting for the answer: no second prompt


def test_no_answer_in_time_raises_the_incident_once():
    watch, _ = evaluate(fresh(), visit(last_fix_t=DUE), CONFIG, DUE)
    times = [DUE + 119, DUE + 120, DUE + 121, DUE + 5000]
    watch, seen = run(watch, times, last_fix_t=DUE + 5000)
    assert seen == [(DUE + 120, DecisionKind.RAISE_INCIDENT, "b1:check:1")]
    assert watch.check is not None and watch.check.incident_raised


def test_ok_closes_the_check_and_rearms_the_next_one_later():
    watch, _ = evaluate(fresh(), visit(last_fix_t=DUE), CONFIG, DUE)
    watch = answer_ok(watch, "b1:check:1", DUE + 30)
    assert watch.check is None and watch.ok_t == DUE + 30
    assert next_check_t(watch, visit(), CONFIG) == DUE + 30 + 900
    times = [DUE + 150, DUE + 929, DUE + 930, DUE + 931]
    watch, seen = run(watch, times, last_fix_t=DUE + 931)
    assert seen == [(DUE + 930, DecisionKind.PROMPT, "b1:check:2")]  # no incident, a new check


def test_an_answer_to_an_old_check_changes_nothing_and_a_foreign_one_is_refused():
    watch, _ = evaluate(fresh(), visit(last_fix_t=DUE), CONFIG, DUE)
    answered = answer_ok(watch, "b1:check:1", DUE + 1)
    assert answer_ok(answered, "b1:check:1", DUE + 2) is answered  # a resend
    assert knows(answered, "b1:check:1") and not knows(answered, "b1:check:2")
    for bad in ("b1:check:2", "b2:check:1", "anything"):
        with pytest.raises(UnknownCheck):
            answer_ok(answered, bad, DUE + 3)


def test_a_late_answer_after_the_incident_still_rearms_the_watch():
    watch, _ = run(fresh(), [DUE, DUE + 120], last_fix_t=DUE + 120)
    assert watch.check is not None and watch.check.incident_raised
    watch = answer_ok(watch, "b1:check:1", DUE + 200)
    assert watch.check is None and next_check_t(watch, visit(), CONFIG) == DUE + 1100


def test_the_margin_and_timeouts_are_configurable():
    config = WatchdogConfig(overdue_margin_s=0, check_timeout_s=5, recheck_after_ok_s=10)
    due = T0 + 3600
    _, seen = run(fresh(), [due - 1, due, due + 4, due + 5], config, last_fix_t=due + 5)
    assert [(t, kind) for t, kind, _ in seen] == [
        (due, DecisionKind.PROMPT),
        (due + 5, DecisionKind.RAISE_INCIDENT),
    ]


def test_an_open_check_and_a_raised_incident_survive_a_restart():
    watch, _ = evaluate(fresh(), visit(last_fix_t=DUE), CONFIG, DUE)
    watch, seen = run(restart(watch), [DUE + 60, DUE + 120], last_fix_t=DUE + 120)
    assert seen == [(DUE + 120, DecisionKind.RAISE_INCIDENT, "b1:check:1")]
    _, again = run(restart(watch), [DUE + 121, DUE + 500], last_fix_t=DUE + 500)
    assert again == []


# -- signal lost -----------------------------------------------------------------------------


def test_signal_lost_fires_once_per_silence():
    last = T0 + 100
    times = [last + 599, last + 600, last + 601, last + 1800]
    watch, seen = run(fresh(), times, last_fix_t=last)
    assert seen == [(last + 600, DecisionKind.SIGNAL_LOST, "b1:signal:1")]
    assert watch.lost_since == last


def test_signal_lost_is_rearmed_when_fixes_resume():
    last = T0 + 100
    watch, _ = run(fresh(), [last + 600], last_fix_t=last)
    resumed = last + 700
    watch, seen = run(watch, [resumed + 1, resumed + 599], last_fix_t=resumed)
    assert seen == [] and watch.lost_since is None
    watch, seen = run(watch, [resumed + 600, resumed + 900], last_fix_t=resumed)
    assert seen == [(resumed + 600, DecisionKind.SIGNAL_LOST, "b1:signal:2")]


def test_silence_counts_from_the_arrival_when_the_last_fix_is_older_or_missing():
    for last in (None, T0 - 3000):
        _, seen = run(fresh(), [T0 + 599, T0 + 600], last_fix_t=last)
        assert seen == [(T0 + 600, DecisionKind.SIGNAL_LOST, "b1:signal:1")]


def test_signal_lost_decision_carries_when_the_silence_began():
    last = T0 + 42
    _, decisions = evaluate(fresh(), visit(last_fix_t=last), CONFIG, last + 600)
    assert [(d.kind, d.silent_since) for d in decisions] == [(DecisionKind.SIGNAL_LOST, last)]


def test_overdue_and_signal_lost_are_independent():
    _, decisions = evaluate(fresh(), visit(last_fix_t=T0), CONFIG, DUE)
    assert sorted(d.kind for d in decisions) == [DecisionKind.PROMPT, DecisionKind.SIGNAL_LOST]


# -- input checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"overdue_margin_s": -1},
        {"check_timeout_s": 0},
        {"recheck_after_ok_s": float("nan")},
        {"signal_lost_s": float("inf")},
    ],
)
def test_config_refuses_nonsense(changes):
    with pytest.raises(ValueError, match=next(iter(changes))):
        WatchdogConfig(**changes)


def test_a_watch_is_evaluated_with_its_own_visit_only():
    with pytest.raises(ValueError, match="b2"):
        evaluate(fresh(), visit(booking_id="b2"), CONFIG, T0)
