"""Safety alerts: raised open with an audit entry, acknowledged once."""

from __future__ import annotations

import msgspec
import pytest

from alerts.safety_alert import (
    AlertKind,
    AlertStatus,
    IllegalAlertTransition,
    SafetyAlert,
    acknowledge,
    open_alert,
)


def raised() -> SafetyAlert:
    alert, entry = open_alert(
        alert_id="a1",
        kind=AlertKind.SIGNAL_LOST,
        t=100.0,
        technician_id="tech-1",
        booking_id="b1",
        message="no position for 600 s",
        actor="system:watchdog",
    )
    assert (entry.action, entry.actor, entry.t) == ("raise", "system:watchdog", 100.0)
    return alert


def test_a_new_alert_is_open_and_its_status_is_on_the_wire():
    alert = raised()
    assert alert.is_open
    assert msgspec.to_builtins(alert)["status"] == "open"  # never omitted as a default


def test_acknowledge_records_who_when_and_the_note():
    acked, entry = acknowledge(raised(), t=130.0, actor="operator:op-1", note="called him")
    assert (acked.status, acked.acked_by, acked.acked_t, acked.note) == (
        AlertStatus.ACKNOWLEDGED,
        "operator:op-1",
        130.0,
        "called him",
    )
    assert (entry.action, entry.actor, entry.note) == ("ack", "operator:op-1", "called him")


def test_a_second_acknowledgement_is_refused_and_names_the_first():
    acked, _ = acknowledge(raised(), t=130.0, actor="operator:op-1")
    with pytest.raises(IllegalAlertTransition, match="operator:op-1"):
        acknowledge(acked, t=140.0, actor="operator:op-2")
