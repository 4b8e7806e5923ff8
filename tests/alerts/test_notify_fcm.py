"""The FCM notifier against a real HTTP server on 127.0.0.1 standing in for FCM v1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from alerts.notify_fcm import FcmNotifier
from alerts.notify_payloads import map_link, push_for_incident, push_idempotency_key
from tests.alerts.notify_helpers import (
    FCM_TOKEN,
    PROJECT,
    Receiver,
    RecordingSleep,
    closed_port,
    sos_message,
)


async def test_fcm_sends_a_v1_message_with_the_map_link(
    receiver: Receiver, make_fcm: Callable[..., FcmNotifier]
) -> None:
    attempts = await make_fcm().send(FCM_TOKEN, sos_message())
    assert [(a.channel, a.ok, a.status) for a in attempts] == [("fcm", True, 200)]
    assert attempts[0].target == "...abc123"
    (request,) = receiver.requests
    assert request.path == f"/v1/projects/{PROJECT}/messages:send"
    assert request.headers["authorization"] == "Bearer test-token"
    message = request.json()["message"]
    assert message["token"] == FCM_TOKEN
    assert message["notification"] == {
        "title": "SOS from Anna (technician)",
        "body": sos_message().body,
    }
    assert message["data"]["map_url"] == map_link(52.52, 13.405)
    assert message["data"]["incident_id"] == "inc-42"
    assert message["android"]["priority"] == "high"


async def test_fcm_503_then_200_is_retried_by_us_not_by_urllib3(
    receiver: Receiver, make_fcm: Callable[..., FcmNotifier]
) -> None:
    receiver.script = [503]
    sleep = RecordingSleep()
    attempts = await make_fcm(sleep=sleep, base_delay_s=0.25).send(FCM_TOKEN, sos_message())
    assert [(a.ok, a.status) for a in attempts] == [(False, 503), (True, 200)]
    assert len(receiver.requests) == 2  # one HTTP request per recorded attempt
    assert sleep.delays == [0.25]


async def test_fcm_retry_after_is_honoured_on_the_loop_not_slept_in_the_thread(
    receiver: Receiver, make_fcm: Callable[..., FcmNotifier]
) -> None:
    receiver.script = [(503, {"Retry-After": "5"})]
    sleep = RecordingSleep()
    started = time.monotonic()
    attempts = await make_fcm(sleep=sleep).send(FCM_TOKEN, sos_message())
    assert time.monotonic() - started < 2.0  # pyfcm's send_request would sleep 5 s here
    assert sleep.delays == [5.0]
    assert [a.ok for a in attempts] == [False, True]


@pytest.mark.parametrize("status", [404, 400])
async def test_fcm_invalid_token_is_a_dead_letter_without_retry(
    receiver: Receiver, make_fcm: Callable[..., FcmNotifier], status: int
) -> None:
    receiver.default = status
    (attempt,) = await make_fcm().send(FCM_TOKEN, sos_message())
    assert len(receiver.requests) == 1
    assert (attempt.ok, attempt.status, attempt.dead_letter) == (False, status, True)
    assert attempt.error
    assert FCM_TOKEN not in attempt.error


async def test_fcm_always_failing_dead_letters_after_max_attempts(
    receiver: Receiver, make_fcm: Callable[..., FcmNotifier]
) -> None:
    receiver.default = 500
    attempts = await make_fcm(max_attempts=3).send(FCM_TOKEN, sos_message())
    assert [a.dead_letter for a in attempts] == [False, False, True]
    assert len(receiver.requests) == 3


async def test_a_hanging_fcm_server_does_not_block_the_event_loop(
    receiver: Receiver, make_fcm: Callable[..., FcmNotifier]
) -> None:
    receiver.default = "hang"
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        attempts = await make_fcm(timeout_s=0.5, max_attempts=1).send(FCM_TOKEN, sos_message())
    finally:
        ticking.cancel()
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 2.0
    assert ticks >= 20  # about 50 if the loop never stalled; 0 if pyfcm ran on it
    (attempt,) = attempts
    assert (attempt.ok, attempt.dead_letter) == (False, True)
    assert attempt.error == "timeout after 0.5 s"


async def test_an_unreachable_fcm_endpoint_is_retried_and_dead_lettered(
    make_fcm: Callable[..., FcmNotifier],
) -> None:
    base = f"http://127.0.0.1:{closed_port()}/v1/projects"
    attempts = await make_fcm(endpoint_base=base, max_attempts=2).send(FCM_TOKEN, sos_message())
    assert [(a.ok, a.status) for a in attempts] == [(False, None), (False, None)]
    assert attempts[-1].dead_letter
    assert all(FCM_TOKEN not in (a.error or "") for a in attempts)


async def test_fcm_pushes_carry_a_stable_idempotency_key_across_retries(
    receiver: Receiver, make_fcm: Callable[..., FcmNotifier]
) -> None:
    """Issue 11: a retried push (or one sent again by a hub that took the step over) must
    show once: the same collapse key, APNs collapse id and data key on every attempt."""
    receiver.script = [503]
    attempts = await make_fcm(sleep=RecordingSleep()).send(FCM_TOKEN, sos_message())
    assert [a.ok for a in attempts] == [False, True]
    again = await make_fcm().send(FCM_TOKEN, sos_message())  # another notifier, e.g. hub
    assert [a.ok for a in again] == [True]
    messages = [request.json()["message"] for request in receiver.requests]
    keys = {m["data"]["idempotency_key"] for m in messages}
    assert len(messages) == 3 and len(keys) == 1
    (key,) = keys
    assert key == push_idempotency_key(sos_message(), FCM_TOKEN)
    for message in messages:
        assert message["android"]["collapse_key"] == key
        assert message["apns"]["headers"]["apns-collapse-id"] == key
        assert message["android"]["priority"] == "high"  # the rest of the config is kept
    assert FCM_TOKEN not in key and "inc-42" not in key
    # Another step, another device: another key.
    other_step = push_for_incident(
        incident_id="inc-42", kind="technician", who="Anna", lat=None, lon=None, step="t2"
    )
    assert push_idempotency_key(other_step, FCM_TOKEN) != key
    assert push_idempotency_key(sos_message(), FCM_TOKEN + "x") != key
