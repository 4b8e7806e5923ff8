"""stop_tasks ends a task even when a cancellation is lost inside it (redis-py on 3.11)."""

from __future__ import annotations

import asyncio

import pytest

from realtime.aio import stop_tasks

pytestmark = pytest.mark.asyncio


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn_loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed == 0:
                    swallowed += 1  # lost, as inside a library's socket read
                    continue
                raise

    task = asyncio.create_task(stubborn_loop())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await stop_tasks([task, None])
    assert task.cancelled() and swallowed == 1


async def test_done_and_missing_tasks_are_fine() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    async with asyncio.timeout(1):
        await stop_tasks([done, None])
