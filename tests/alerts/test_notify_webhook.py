"""The webhook notifier against a real HTTP server on 127.0.0.1 that fails on demand."""

from __future__ import annotations

import time

from alerts.notify import DeliveryAttempt
from alerts.notify_payloads import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify_signature
from alerts.notify_webhook import WebhookNotifier
from tests.alerts.notify_helpers import (
    SECRET,
    Receiver,
    RecordingSleep,
    closed_port,
    sample_payload,
)


async def test_webhook_receiver_verifies_the_signature(receiver: Receiver) -> None:
    notifier = WebhookNotifier(receiver.url(), SECRET)
    try:
        attempts = await notifier.deliver(sample_payload())
    finally:
        await notifier.aclose()
    assert [(a.ok, a.status, a.attempt) for a in attempts] == [(True, 200, 1)]
    (request,) = receiver.requests
    header = request.headers[SIGNATURE_HEADER.lower()]
    assert request.headers["content-type"] == "application/json"
    assert request.json() == sample_payload()
    assert verify_signature(SECRET, header, request.body, now=time.time())
    tampered = request.body.replace(b"no_ack", b"acked!")
    assert not verify_signature(SECRET, header, tampered, now=time.time())


async def test_webhook_retries_with_backoff_until_success(receiver: Receiver) -> None:
    receiver.script = [500, 503, 429]
    sleep = RecordingSleep()
    seen: list[DeliveryAttempt] = []
    notifier = WebhookNotifier(receiver.url(), SECRET, base_delay_s=0.5, sleep=sleep)
    try:
        attempts = await notifier.deliver(sample_payload(), on_attempt=seen.append)
    finally:
        await notifier.aclose()
    assert sleep.delays == [0.5, 1.0, 2.0]
    assert [a.status for a in attempts] == [500, 503, 429, 200]
    assert [a.ok for a in attempts] == [False, False, False, True]
    assert [a.attempt for a in attempts] == [1, 2, 3, 4]
    assert not any(a.dead_letter for a in attempts)
    assert seen == attempts  # reported one by one, while retrying
    assert "HTTP 503" in (attempts[1].error or "")
    keys = {r.headers[IDEMPOTENCY_HEADER.lower()] for r in receiver.requests}
    assert keys == {"dlv-1"}
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1


async def test_a_permanently_failing_webhook_gets_max_attempts_and_a_dead_letter(
    receiver: Receiver,
) -> None:
    receiver.default = 503
    sleep = RecordingSleep()
    notifier = WebhookNotifier(
        receiver.url(), SECRET, max_attempts=3, base_delay_s=0.2, sleep=sleep
    )
    try:
        attempts = await notifier.deliver(sample_payload())
    finally:
        await notifier.aclose()
    assert len(receiver.requests) == 3
    assert sleep.delays == [0.2, 0.4]
    assert [a.dead_letter for a in attempts] == [False, False, True]
    assert not any(a.ok for a in attempts)


async def test_a_webhook_400_is_not_retried(receiver: Receiver) -> None:
    receiver.default = 400
    notifier = WebhookNotifier(receiver.url(), SECRET, sleep=RecordingSleep())
    try:
        (attempt,) = await notifier.deliver(sample_payload())
    finally:
        await notifier.aclose()
    assert len(receiver.requests) == 1
    assert (attempt.ok, attempt.status, attempt.dead_letter) == (False, 400, True)
    assert "failing with 400 on purpose" in (attempt.error or "")


async def test_a_webhook_429_retry_after_lengthens_the_backoff(receiver: Receiver) -> None:
    receiver.script = [(429, {"Retry-After": "3"})]
    sleep = RecordingSleep()
    notifier = WebhookNotifier(receiver.url(), SECRET, base_delay_s=0.5, sleep=sleep)
    try:
        attempts = await notifier.deliver(sample_payload())
    finally:
        await notifier.aclose()
    assert sleep.delays == [3.0]
    assert [a.ok for a in attempts] == [False, True]


async def test_a_hanging_webhook_times_out_as_a_failed_attempt(receiver: Receiver) -> None:
    receiver.default = "hang"
    notifier = WebhookNotifier(
        receiver.url(), SECRET, max_attempts=2, timeout_s=0.2, sleep=RecordingSleep()
    )
    started = time.monotonic()
    try:
        attempts = await notifier.deliver(sample_payload())
    finally:
        await notifier.aclose()
    assert time.monotonic() - started < 2.0
    assert len(receiver.requests) == 2
    assert [a.error for a in attempts] == ["timeout after 0.2 s"] * 2
    assert attempts[-1].dead_letter


async def test_a_refused_connection_is_retried_and_dead_lettered() -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook?api_key=gateway-secret"
    notifier = WebhookNotifier(url, SECRET, max_attempts=2, sleep=RecordingSleep())
    try:
        attempts = await notifier.deliver(sample_payload())
    finally:
        await notifier.aclose()
    assert [a.ok for a in attempts] == [False, False]
    assert attempts[-1].dead_letter
    assert attempts[0].status is None and attempts[0].error
    for attempt in attempts:
        assert "gateway-secret" not in f"{attempt.target} {attempt.error}"
        assert attempt.target.startswith("127.0.0.1:")


async def test_without_a_delivery_id_the_idempotency_key_is_still_stable(
    receiver: Receiver,
) -> None:
    receiver.script = [502]
    notifier = WebhookNotifier(receiver.url(), SECRET, sleep=RecordingSleep())
    try:
        await notifier.deliver({"type": "test"})
    finally:
        await notifier.aclose()
    keys = [r.headers[IDEMPOTENCY_HEADER.lower()] for r in receiver.requests]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0]


async def test_each_attempt_is_signed_with_the_clock_at_that_attempt(receiver: Receiver) -> None:
    receiver.script = [500]
    now = iter([1000.0, 1000.0, 1000.0, 1005.0, 1005.0])
    notifier = WebhookNotifier(
        receiver.url(), SECRET, clock=lambda: next(now), sleep=RecordingSleep()
    )
    try:
        attempts = await notifier.deliver(sample_payload())
    finally:
        await notifier.aclose()
    headers = [r.headers[SIGNATURE_HEADER.lower()] for r in receiver.requests]
    assert [h.split(",")[0] for h in headers] == ["t=1000", "t=1005"]
    assert [a.t for a in attempts] == [1000.0, 1005.0]
