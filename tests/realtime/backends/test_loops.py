"""The Redis bus's retry policy (``loops.py``), without Redis: the backoff schedule, what is
retried and what is not, stopping at closing, and a stop that survives a lost cancellation."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from tenacity import RetryCallState

from realtime.aio import stop_tasks
from realtime.backends.redis.loops import Backoff, failure_of, reconnecting


def test_backoff_doubles_up_to_its_cap_with_half_to_one_and_a_half_jitter() -> None:
    low = Backoff(0.05, 0.3, jitter=lambda: 0.0)
    assert [low() for _ in range(5)] == pytest.approx([0.025, 0.05, 0.1, 0.15, 0.15])
    high = Backoff(0.05, 0.3, jitter=lambda: 0.999)
    assert high() == pytest.approx(0.05 * 1.499)


def test_backoff_starts_over_after_reset() -> None:
    backoff = Backoff(1.0, 8.0, jitter=lambda: 0.5)
    assert [backoff() for _ in range(3)] == [1.0, 2.0, 4.0]
    backoff.reset()
    assert backoff() == 1.0


def test_a_long_outage_stays_at_the_cap() -> None:
    backoff = Backoff(0.05, 5.0, jitter=lambda: 0.5)
    for _ in range(5000):  # hours of retries: no overflow, no growth past the cap
        delay = backoff()
    assert delay == 5.0


async def test_retried_errors_are_retried_until_the_call_works() -> None:
    attempts = itertools.count(1)
    failures: list[str] = []

    async def flaky() -> str:
        if next(attempts) < 4:
            raise ConnectionError("down")
        return "up"

    def after(state: RetryCallState) -> None:
        failures.append(str(failure_of(state)))

    retrying = reconnecting(
        Backoff(0.001, 0.002), retry_on=(ConnectionError,), closing=lambda: False, after=after
    )
    assert await retrying(flaky) == "up"
    assert failures == ["down"] * 3


async def test_other_errors_and_cancellation_go_through_unchanged() -> None:
    retrying = reconnecting(Backoff(0.001, 0.002), retry_on=(OSError,), closing=lambda: False)

    async def refused() -> None:
        raise ValueError("OOM")

    with pytest.raises(ValueError, match="OOM"):
        await retrying(refused)

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await retrying(cancelled)


async def test_closing_ends_the_retries_quietly() -> None:
    closing = False
    attempts = 0

    async def down() -> None:
        nonlocal attempts, closing
        attempts += 1
        if attempts == 2:
            closing = True
        raise OSError("down")

    retrying = reconnecting(Backoff(0.001, 0.002), retry_on=(OSError,), closing=lambda: closing)
    assert await retrying(down) is None
    assert attempts == 2


async def test_stop_for_sure_cancels_again_a_task_that_swallowed_a_cancellation() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # what redis-py can do on Python 3.11

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await stop_tasks([task, None])
    assert task.cancelled() and swallowed == 1
