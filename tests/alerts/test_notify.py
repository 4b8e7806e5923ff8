"""Notifiers against a real HTTP server on 127.0.0.1 that records requests and fails on demand."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerts.notify import (
    AttemptOutcome,
    DeliveryAttempt,
    backoff_delays,
    delay_before_retry,
    retry_after_s,
    run_attempts,
)
from alerts.notify_fcm import FcmNotifier, fixed_token_credentials
from alerts.notify_payloads import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    PushMessage,
    contact_payload,
    map_link,
    push_for_incident,
    push_idempotency_key,
    sign,
    signature_header,
    verify_signature,
    webhook_payload,
)
from alerts.notify_webhook import WebhookNotifier
from tests.conftest import local_server

SECRET = b"webhook-secret-for-tests"
PROJECT = "doorstep-test"
FCM_TOKEN = "fcm-registration-token-" + "x" * 120 + "abc123"

# --- the local receiver -----------------------------------------------------------------

# A reply the receiver gives: a status, a status with extra headers, or "hang" (never answers
# until the test ends).
Reply = int | tuple[int, dict[str, str]] | str

FCM_UNREGISTERED = {
    "error": {
        "code": 404,
        "message": "Requested entity was not found.",
        "status": "NOT_FOUND",
        "details": [
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "UNREGISTERED",
            }
        ],
    }
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every request; answers from ``script`` first, then ``default``."""

    port: int = 0
    script: list[Reply] = field(default_factory=list)
    default: Reply = 200
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(Received(request.url.path, dict(request.headers), body))
        reply = self.script.pop(0) if self.script else self.default
        if reply == "hang":
            await self.release.wait()  # set at teardown, so the server can shut down
            return Response(status_code=200)
        status, headers = reply if isinstance(reply, tuple) else (reply, {})
        assert isinstance(status, int)
        if status == 200:
            return JSONResponse({"name": f"projects/{PROJECT}/messages/0:1"}, headers=headers)
        if status == 404:
            return JSONResponse(FCM_UNREGISTERED, status_code=404, headers=headers)
        error = {"error": {"code": status, "message": f"failing with {status} on purpose"}}
        return JSONResponse(error, status_code=status, headers=headers)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    fake = Receiver()
    app = Starlette(routes=[Route("/{path:path}", fake.handle, methods=["POST"])])
    async with local_server(app) as fake.port:
        yield fake
        fake.release.set()  # let hanging requests finish so the server can stop


class RecordingSleep:
    """Stands in for asyncio.sleep: records the backoff instead of waiting it out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def make_fcm(receiver: Receiver) -> AsyncIterator[Callable[..., FcmNotifier]]:
    made: list[FcmNotifier] = []

    def factory(**overrides: Any) -> FcmNotifier:
        options: dict[str, Any] = {
            "project_id": PROJECT,
            "credentials": fixed_token_credentials("test-token"),
            "endpoint_base": receiver.url("/v1/projects"),
            "timeout_s": 2.0,
            "sleep": RecordingSleep(),
        }
        options.update(overrides)
        notifier = FcmNotifier(**options)
        made.append(notifier)
        return notifier

    yield factory
    for notifier in made:
        await notifier.aclose()


def sos_message() -> PushMessage:
    return push_for_incident(
        incident_id="inc-42", kind="technician", who="Anna", lat=52.52, lon=13.405, step="contacts"
    )


def sample_payload() -> dict[str, Any]:
    incident = {"id": "inc-42", "status": "open", "lat": 52.52, "lon": 13.405}
    return webhook_payload(
        incident=incident, step="contacts", reason="no_ack", delivery_id="dlv-1", t=1000.0
    )


# --- pure parts ---------------------------------------------------------------------------


def test_map_link_points_openstreetmap_at_the_position() -> None:
    assert map_link(52.52, 13.405) == (
        "https://www.openstreetmap.org/?mlat=52.520000&mlon=13.405000#map=18/52.520000/13.405000"
    )


@pytest.mark.parametrize(("lat", "lon"), [(91.0, 0.0), (0.0, -181.0), (float("nan"), 0.0)])
def test_map_link_refuses_positions_that_are_not_on_earth(lat: float, lon: float) -> None:
    with pytest.raises(ValueError):
        map_link(lat, lon)


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET, b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, b"{}") == expected


def test_signature_verifies_within_tolerance_and_fails_for_a_tampered_body() -> None:
    header = signature_header(SECRET, 1000, b'{"a":1}')
    assert verify_signature(SECRET, header, b'{"a":1}', now=1100.0)
    assert not verify_signature(SECRET, header, b'{"a":2}', now=1100.0)
    assert not verify_signature(b"other-secret", header, b'{"a":1}', now=1100.0)


def test_a_replay_outside_the_tolerance_is_rejected() -> None:
    header = signature_header(SECRET, 1000, b"{}")
    assert verify_signature(SECRET, header, b"{}", now=1300.0)
    assert not verify_signature(SECRET, header, b"{}", now=1301.0)
    assert not verify_signature(SECRET, header, b"{}", now=600.0, tolerance_s=300)


@pytest.mark.parametrize("header", ["", "garbage", "t=abc,v1=00", "v1=00", "t=1000", "t=1000,v1"])
def test_malformed_signature_headers_are_rejected(header: str) -> None:
    assert not verify_signature(SECRET, header, b"{}", now=1000.0)


def test_any_v1_may_match_so_secrets_can_be_rotated() -> None:
    old = sign(b"old-secret", 1000, b"{}")
    new = sign(SECRET, 1000, b"{}")
    assert verify_signature(SECRET, f"t=1000,v1={old},v1={new}", b"{}", now=1000.0)


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


def test_push_names_the_reporter_and_links_the_map() -> None:
    message = sos_message()
    assert message.title == "SOS from Anna (technician)"
    assert map_link(52.52, 13.405) in message.body
    assert message.data["map_url"] == map_link(52.52, 13.405)
    assert message.data["incident_id"] == "inc-42"
    assert (message.data["lat"], message.data["lon"]) == ("52.520000", "13.405000")
    assert all(isinstance(value, str) for value in message.data.values())


def test_push_without_a_position_says_so_and_sends_no_empty_coordinates() -> None:
    message = push_for_incident(
        incident_id="inc-1", kind="customer", who="Ben", lat=None, lon=None, step="contacts"
    )
    assert "not known" in message.body
    assert not {"map_url", "lat", "lon"} & message.data.keys()


def test_webhook_payload_is_json_with_the_map_link() -> None:
    payload = sample_payload()
    assert json.loads(json.dumps(payload)) == payload
    assert payload["type"] == "doorstep.incident.escalation"
    assert payload["map_url"] == map_link(52.52, 13.405)
    assert payload["incident"]["id"] == "inc-42"
    nested = webhook_payload(
        incident={"id": "i", "location": {"lat": 1.0, "lon": 2.0}},
        step="s",
        reason="r",
        delivery_id="d",
        t=0.0,
        text="SOS from Anna",
    )
    assert nested["map_url"] == map_link(1.0, 2.0)
    assert nested["text"] == "SOS from Anna"
    bare = webhook_payload(incident={"id": "i"}, step="s", reason="r", delivery_id="d", t=0.0)
    assert "map_url" not in bare


def test_contact_payload_says_who_and_where_and_leaves_out_trail_notes_and_audit() -> None:
    incident = {
        "id": "inc-7",
        "kind": "sos",
        "status": "open",
        "created_t": 990.0,
        "reporter": {"sub": "tech-1", "role": "technician"},
        "location": {"lat": 52.52, "lon": 13.405, "t": 985.0, "source": "last_fix"},
        "address": {"lat": 52.6, "lon": 13.5, "t": 900.0, "source": "booking_address"},
        "note": "door code 4711",
        "trail": [[991.0, 52.52, 13.405, 5.0]],
        "audit": [{"t": 990.0, "action": "raise", "actor": "technician:tech-1"}],
        "deliveries": [{"t": 991.0, "channel": "webhook", "target": "x", "step": "t1"}],
    }
    payload = contact_payload(
        incident=incident,
        who="Anna (technician)",
        step="contacts",
        reason="not acknowledged",
        delivery_id="inc-7:contacts:0",
        t=1000.0,
        contact={"name": "Mia", "phone": "+4915112345678"},
        text="Anna pressed SOS",
    )
    assert payload["incident"] == {
        "id": "inc-7",
        "kind": "sos",
        "created_t": 990.0,
        "status": "open",
    }
    assert payload["person"] == {"name": "Anna (technician)", "role": "technician"}
    assert payload["location"] == {"lat": 52.52, "lon": 13.405, "t": 985.0, "source": "last_fix"}
    assert payload["map_url"] == map_link(52.52, 13.405)
    assert payload["delivery_id"] == "inc-7:contacts:0" and payload["text"] == "Anna pressed SOS"
    text = json.dumps(payload)
    for private in ("trail", "audit", "deliveries", "4711", "address", "52.6"):
        assert private not in text
    bare = contact_payload(
        incident={"id": "i"}, who="x", step="s", reason="r", delivery_id="d", t=0.0, contact={}
    )
    assert "location" not in bare and "map_url" not in bare


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


# --- webhook ------------------------------------------------------------------------------


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


# --- FCM ----------------------------------------------------------------------------------


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
