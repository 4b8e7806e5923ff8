"""The delivery loop (alerts/notify.py) without sockets: backoff schedule, Retry-After, tenacity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from alerts.notify import (
    AttemptOutcome,
    DeliveryAttempt,
    backoff_delays,
    delay_before_retry,
    retry_after_s,
    run_attempts,
)
from tests.alerts.notify_helpers import RecordingSleep

# --- backoff schedule and Retry-After ----------------------------------------------------


def test_backoff_is_exponential_and_capped() -> None:
    assert backoff_delays(5, 0.5) == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delays(4, 1.0, factor=3.0) == [1.0, 3.0, 9.0]
    assert backoff_delays(8, 10.0) == [10.0, 20.0, 30.0, 30.0, 30.0, 30.0, 30.0]
    assert backoff_delays(1, 0.5) == []
    with pytest.raises(ValueError):
        backoff_delays(0, 0.5)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s("7", now=0.0) == 7.0
    assert retry_after_s("Thu, 01 Jan 1970 00:00:30 GMT", now=10.0) == 20.0
    assert retry_after_s("soon", now=0.0) is None
    assert retry_after_s(None, now=0.0) is None
    assert delay_before_retry(0.5, 7.0) == 7.0
    assert delay_before_retry(0.5, 3600.0) == 30.0  # a server cannot stall an SOS for an hour
    assert delay_before_retry(2.0, 1.0) == 2.0


# --- the delivery loop (tenacity), without sockets ------------------------------------------


def scripted(*outcomes: AttemptOutcome) -> Callable[[], Any]:
    """An attempt_once that answers the given outcomes in order."""
    queue = list(outcomes)

    async def attempt_once() -> AttemptOutcome:
        return queue.pop(0)

    return attempt_once


async def run_scripted(*outcomes: AttemptOutcome, **overrides: Any) -> list[DeliveryAttempt]:
    options: dict[str, Any] = {
        "channel": "webhook",
        "target": "gw:443",
        "delays": backoff_delays(4, 0.5),
        "clock": lambda: 0.0,
        "sleep": RecordingSleep(),
        "attempt_once": scripted(*outcomes),
        "on_attempt": None,
    }
    options.update(overrides)
    return await run_attempts(**options)


async def test_the_loop_pauses_the_schedule_and_retry_after_capped() -> None:
    sleep = RecordingSleep()
    busy = AttemptOutcome(
        ok=False, status=503, error="HTTP 503", retry_after="Thu, 01 Jan 1970 00:00:07 GMT"
    )
    stalled = AttemptOutcome(ok=False, status=429, error="HTTP 429", retry_after="3600")
    plain = AttemptOutcome(ok=False, status=500, error="HTTP 500")
    attempts = await run_scripted(busy, stalled, plain, plain, sleep=sleep)
    assert sleep.delays == [7.0, 30.0, 2.0]  # HTTP-date at clock 0, capped, then the schedule
    assert all(type(d) is float for d in sleep.delays)
    assert [a.attempt for a in attempts] == [1, 2, 3, 4]
    assert [a.dead_letter for a in attempts] == [False, False, False, True]


async def test_the_loop_stops_at_success_or_a_permanent_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fail = AttemptOutcome(ok=False, status=502, error="HTTP 502")
    refused = AttemptOutcome(ok=False, status=400, error="HTTP 400", retryable=False)
    seen: list[DeliveryAttempt] = []
    with caplog.at_level("WARNING", logger="doorstep.notify"):
        ok = await run_scripted(fail, AttemptOutcome(ok=True, status=200), on_attempt=seen.append)
        (dead,) = await run_scripted(refused)
    assert [a.ok for a in ok] == [False, True] and seen == ok
    assert (dead.status, dead.dead_letter) == (400, True)
    assert [r.getMessage() for r in caplog.records] == [
        "webhook delivery to gw:443 failed (attempt 1/4): HTTP 502",
        "webhook delivery to gw:443 failed (attempt 1/4, dead letter): HTTP 400",
    ]


async def test_an_exception_in_an_attempt_propagates_without_a_retry() -> None:
    calls: list[int] = []

    async def broken() -> AttemptOutcome:
        calls.append(1)
        raise RuntimeError("a bug, not a delivery problem")

    with pytest.raises(RuntimeError, match="a bug"):
        await run_scripted(attempt_once=broken)
    assert calls == [1]
