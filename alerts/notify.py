"""Notifiers of the SOS feature: FCM push (through pyfcm) and a signed webhook.

Escalation decides *who* must hear about an incident and *when*; this module only delivers,
and reports every attempt as a ``DeliveryAttempt`` so that the hub can record it on the
incident and show failures to operators. Delivery never raises for a delivery problem: a
refused connection, a timeout or a 503 is an attempt with ``ok=False``; the final failed
attempt carries ``dead_letter=True`` so nothing fails silently.

Two shells around the same retry loop (``_run_attempts``):

- ``WebhookNotifier`` POSTs JSON signed with HMAC-SHA256 (Stripe-style header, so receivers
  can reject replays); it is the bridge to an SMS or voice gateway.
- ``FcmNotifier`` sends an FCM v1 message through pyfcm. pyfcm is synchronous (requests), so
  every call runs in this notifier's own small thread pool, under a deadline enforced on the
  event loop: a slow or dead push endpoint costs at most ``timeout_s`` per attempt and never
  blocks the loop or the threads the hub uses for storage.

The pure parts (map link, signature, payloads, backoff schedule, Retry-After parsing) are
plain functions with time passed in, tested without sockets. This module imports nothing
from ``realtime`` (realtime imports alerts, never the reverse).
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import inspect
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import requests
from google.oauth2.credentials import Credentials
from pyfcm import FCMNotification
from requests.adapters import HTTPAdapter

log = logging.getLogger("doorstep.notify")

SIGNATURE_HEADER = "X-Doorstep-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
WEBHOOK_EVENT_TYPE = "doorstep.incident.escalation"

# A server may ask for a longer pause with Retry-After; we honour it up to this bound only,
# because an SOS that waits minutes for a gateway is worse than a dead letter an operator sees.
MAX_RETRY_AFTER_S = 30.0
# Error texts end up on the incident and on the operator's console: enough to diagnose,
# never a whole HTML error page.
ERROR_TEXT_LIMIT = 300
# Threads for pyfcm calls. Bounded, so a dead push endpoint holds at most this many threads
# (each for at most timeout_s); sends queued behind them hit their deadline and are cancelled
# before they start. A separate pool keeps the loop's default executor free for the hub.
FCM_WORKER_THREADS = 4
# FCM answers that condemn the message or the token itself (400 INVALID_ARGUMENT,
# 403 SENDER_ID_MISMATCH, 404 UNREGISTERED): the same request can never succeed.
FCM_PERMANENT_STATUSES = frozenset({400, 403, 404})
# High priority wakes an Android phone in Doze and makes APNs deliver immediately: an SOS
# must not wait for the next maintenance window.
_ANDROID_CONFIG = {"priority": "high"}
_APNS_CONFIG = {"headers": {"apns-priority": "10"}, "payload": {"aps": {"sound": "default"}}}

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
AttemptHook = Callable[["DeliveryAttempt"], Awaitable[None] | None]


@dataclass(frozen=True)
class DeliveryAttempt:
    """One try to deliver one notification; ``t`` is when the attempt started.

    ``target`` identifies the destination for operators without leaking it: the webhook's
    host (never its path or query, which may hold a key) or the last characters of an FCM
    token (a full token lets anyone push to that phone).
    """

    channel: str  # "webhook" | "fcm"
    target: str
    attempt: int  # 1-based
    ok: bool
    t: float
    status: int | None = None
    error: str | None = None
    dead_letter: bool = False  # True on the final failed attempt: nobody will retry it


@dataclass(frozen=True)
class PushMessage:
    """A push notification; ``data`` values are strings because FCM accepts nothing else."""

    title: str
    body: str
    data: dict[str, str]


# --- pure parts -------------------------------------------------------------------------


def _valid_point(lat: float | None, lon: float | None) -> bool:
    if lat is None or lon is None:
        return False
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    return -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0


def map_link(lat: float, lon: float) -> str:
    """An OpenStreetMap link with a marker: opens in any browser, no app or API key needed.

    Six decimals is about 0.1 m, finer than any phone fix; more digits only lengthen SMS.
    """
    if not _valid_point(lat, lon):
        raise ValueError(f"not a WGS84 position: lat={lat!r}, lon={lon!r}")
    la, lo = f"{lat:.6f}", f"{lon:.6f}"
    return f"https://www.openstreetmap.org/?mlat={la}&mlon={lo}#map=18/{la}/{lo}"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 over ``"{timestamp}." + body``.

    The timestamp is inside the MAC so a receiver can refuse an old request replayed with
    its original, valid signature.
    """
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Doorstep-Signature`` value: ``t={timestamp},v1={hex}``."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def _parse_signature_header(header: str) -> tuple[int, list[str]] | None:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return None
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify_signature(
    secret: bytes, header: str, body: bytes, now: float, tolerance_s: float = 300
) -> bool:
    """Check a signature header the way a receiver should.

    Several ``v1`` entries are accepted (any one may match) so that a sender can sign with
    an old and a new secret while the secret is rotated. Comparison is constant-time.
    """
    parsed = _parse_signature_header(header)
    if parsed is None:
        return False
    timestamp, signatures = parsed
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


def backoff_delays(
    max_attempts: int, base_s: float, factor: float = 2.0, cap_s: float = 30.0
) -> list[float]:
    """Pauses before attempts 2..n: ``base, base*factor, ...``, each at most ``cap_s``.

    No jitter: there is one gateway and a handful of open incidents, not a herd of clients
    to spread out, and a deterministic schedule is what operators and tests can reason about.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if base_s < 0 or factor < 1 or cap_s < 0:
        raise ValueError("need base_s >= 0, factor >= 1 and cap_s >= 0")
    return [min(cap_s, base_s * factor**i) for i in range(max_attempts - 1)]


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is the same instant
        return None
    return max(0.0, when.timestamp() - now)


def delay_before_retry(backoff_s: float, retry_after: float | None) -> float:
    """The scheduled backoff, lengthened (up to ``MAX_RETRY_AFTER_S``) if the server asked."""
    if retry_after is None:
        return backoff_s
    return max(backoff_s, min(retry_after, MAX_RETRY_AFTER_S))


def webhook_status_retryable(status: int) -> bool:
    """5xx, 408 and 429 may pass on a later try; any other non-2xx answer will not."""
    return status >= 500 or status in (408, 429)


def fcm_status_retryable(status: int) -> bool:
    """Everything but FCM's verdicts on the message or token (401: a fresh token may fix it)."""
    return status not in FCM_PERMANENT_STATUSES


def push_for_incident(
    *,
    incident_id: str,
    kind: str,
    who: str,
    lat: float | None,
    lon: float | None,
    step: str,
) -> PushMessage:
    """The push an emergency contact receives, written for a person, not an operator.

    ``kind`` is the reporter's role ("technician" or "customer"), ``who`` their display name,
    ``step`` the escalation step that sent it. Without a valid position the location keys are
    left out of ``data`` rather than sent empty, so the app cannot mistake "" for a place.
    """
    name = who.strip() or "someone"
    title = f"SOS from {name} ({kind})" if kind else f"SOS from {name}"
    data = {"type": "doorstep.sos", "incident_id": incident_id, "kind": kind, "step": step}
    if lat is not None and lon is not None and _valid_point(lat, lon):
        url = map_link(lat, lon)
        data.update(map_url=url, lat=f"{lat:.6f}", lon=f"{lon:.6f}")
        body = f"{name} pressed SOS and may need help. Location: {url}"
    else:
        body = f"{name} pressed SOS and may need help. Their location is not known yet."
    return PushMessage(title=title, body=body, data=data)


def push_idempotency_key(message: PushMessage, token: str) -> str:
    """A stable key for one push of one escalation step to one device: the same on every
    retry and on a hub that takes the step over, so the device (and FCM's collapsing) shows
    it once. Derived from incident + step + target; 32 hex characters, within APNs's 64-byte
    ``apns-collapse-id`` limit, and revealing neither the token nor the incident."""
    parts = (message.data.get("incident_id", ""), message.data.get("step", ""), token)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def push_configs(key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """FCM v1 ``android`` and ``apns`` blocks carrying the idempotency key: Android's
    ``collapse_key`` and APNs's ``apns-collapse-id`` replace an undelivered or shown copy of
    the same push instead of adding a second one."""
    android = {**_ANDROID_CONFIG, "collapse_key": key}
    apns = {
        **_APNS_CONFIG,
        "headers": {**_APNS_CONFIG["headers"], "apns-collapse-id": key},
    }
    return android, apns


def _incident_point(incident: Mapping[str, Any]) -> tuple[float, float] | None:
    """The incident's position: top-level ``lat``/``lon`` or a nested ``location`` object."""
    source: Any = incident
    if incident.get("lat") is None and isinstance(incident.get("location"), Mapping):
        source = incident["location"]
    lat, lon = source.get("lat"), source.get("lon")
    if not (isinstance(lat, int | float) and isinstance(lon, int | float)):
        return None
    return (float(lat), float(lon)) if _valid_point(lat, lon) else None


def webhook_payload(
    *,
    incident: Mapping[str, Any],
    step: str,
    reason: str,
    delivery_id: str,
    t: float,
    text: str | None = None,
) -> dict[str, Any]:
    """The webhook body. ``delivery_id`` doubles as the Idempotency-Key, so a gateway that
    sees a retry of a request it already handled does not call or text the contact twice.

    ``text`` (for example ``push_for_incident(...).body``) is a ready-made sentence an SMS or
    voice bridge can forward as is; ``map_url`` is present when the incident has a position.
    """
    body: dict[str, Any] = {
        "type": WEBHOOK_EVENT_TYPE,
        "step": step,
        "reason": reason,
        "delivery_id": delivery_id,
        "t": t,
        "incident": dict(incident),
    }
    point = _incident_point(incident)
    if point is not None:
        body["map_url"] = map_link(*point)
    if text:
        body["text"] = text
    return body


def contact_payload(
    *,
    incident: Mapping[str, Any],
    who: str,
    step: str,
    reason: str,
    delivery_id: str,
    t: float,
    contact: Mapping[str, Any],
    text: str | None = None,
) -> dict[str, Any]:
    """The body for the SMS/voice bridge: what a person calling or texting a contact needs.

    Who (``who``, the reporter's display name, and their role), where (the incident's
    location, its time and source, and a map link), which incident (id, kind, when raised)
    and the contact to reach. Never the trail, the operators' notes, the audit trail or the
    delivery records: the bridge is a third party, and a contact needs a place, not a
    person's movements (docs/privacy.md). The supervisor webhook (staff) gets the whole
    incident through ``webhook_payload``.
    """
    reporter = incident.get("reporter") or {}
    summary: dict[str, Any] = {
        "id": incident.get("id"),
        "kind": incident.get("kind"),
        "created_t": incident.get("created_t"),
        "status": incident.get("status"),
    }
    body: dict[str, Any] = {
        "type": WEBHOOK_EVENT_TYPE,
        "step": step,
        "reason": reason,
        "delivery_id": delivery_id,
        "t": t,
        "incident": summary,
        "person": {"name": who, "role": reporter.get("role")},
        "contact": dict(contact),
    }
    location = incident.get("location")
    point = _incident_point(incident)
    if point is not None and isinstance(location, Mapping):
        body["location"] = {
            "lat": point[0],
            "lon": point[1],
            "t": location.get("t"),
            "source": location.get("source"),
        }
        body["map_url"] = map_link(*point)
    if text:
        body["text"] = text
    return body


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """Compact, key-sorted JSON: the exact bytes that are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def url_target(url: str) -> str:
    """Host (and port) of a URL: its path or query may carry a gateway's API key."""
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host


def token_target(token: str) -> str:
    """The last characters of an FCM token: enough to tell devices apart, useless to push."""
    return f"...{token[-6:]}"


def _error_text(exc: BaseException, *, redact: Mapping[str, str] | None = None) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    for secret, replacement in (redact or {}).items():
        if secret:
            text = text.replace(secret, replacement)
    return text[:ERROR_TEXT_LIMIT]


# --- the retry loop shared by both notifiers ----------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """What one attempt produced, before it is numbered and timestamped."""

    ok: bool
    status: int | None = None
    error: str | None = None
    retryable: bool = True
    retry_after: str | None = None  # the raw Retry-After header, parsed with the clock


async def _call_hook(hook: AttemptHook, attempt: DeliveryAttempt) -> None:
    """Report an attempt; a failing hook is logged, because it must not stop the delivery."""
    try:
        result = hook(attempt)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("on_attempt hook failed for %s attempt %d", attempt.channel, attempt.attempt)


async def _run_attempts(
    *,
    channel: str,
    target: str,
    delays: list[float],
    clock: Clock,
    sleep: Sleep,
    attempt_once: Callable[[], Awaitable[_Outcome]],
    on_attempt: AttemptHook | None,
) -> list[DeliveryAttempt]:
    """Try up to ``len(delays) + 1`` times; stop at the first success or permanent failure."""
    max_attempts = len(delays) + 1
    attempts: list[DeliveryAttempt] = []
    for number in range(1, max_attempts + 1):
        started = clock()
        outcome = await attempt_once()
        final = outcome.ok or not outcome.retryable or number == max_attempts
        attempt = DeliveryAttempt(
            channel=channel,
            target=target,
            attempt=number,
            ok=outcome.ok,
            t=started,
            status=outcome.status,
            error=outcome.error,
            dead_letter=final and not outcome.ok,
        )
        attempts.append(attempt)
        if not outcome.ok:
            log.warning(
                "%s delivery to %s failed (attempt %d/%d%s): %s",
                channel,
                target,
                number,
                max_attempts,
                ", dead letter" if attempt.dead_letter else "",
                outcome.error,
            )
        if on_attempt is not None:
            await _call_hook(on_attempt, attempt)
        if final:
            break
        wanted = retry_after_s(outcome.retry_after, clock())
        await sleep(delay_before_retry(delays[number - 1], wanted))
    return attempts


# --- webhook --------------------------------------------------------------------------


class WebhookNotifier:
    """Signed JSON POSTs to one URL, retried with exponential backoff."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        max_attempts: int = 5,
        base_delay_s: float = 0.5,
        timeout_s: float = 5.0,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required: receivers must be able to verify")
        self.url = url
        self.target = url_target(url)
        self._secret = secret
        self._delays = backoff_delays(max_attempts, base_delay_s)
        # Five seconds per try: a gateway that has not answered by then is treated as down,
        # and the next try (or the dead letter) comes sooner than a stuck socket would.
        self._timeout_s = timeout_s
        self._clock = clock
        self._sleep = sleep
        self._owns_client = client is None
        # Redirects are not followed: a signed POST moving elsewhere is a misconfiguration
        # to show to an operator (permanent failure), not something to chase.
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def deliver(
        self, payload: Mapping[str, Any], *, on_attempt: AttemptHook | None = None
    ) -> list[DeliveryAttempt]:
        """POST ``payload`` until it is accepted, permanently refused, or attempts run out.

        The body bytes and the Idempotency-Key stay the same across retries; the signature is
        recomputed each time, so a retry after a long backoff still carries a fresh timestamp.
        ``on_attempt`` is called after every attempt, so failures show up while retrying.
        """
        body = encode_body(payload)
        key = str(payload.get("delivery_id") or uuid.uuid4())
        return await _run_attempts(
            channel="webhook",
            target=self.target,
            delays=self._delays,
            clock=self._clock,
            sleep=self._sleep,
            attempt_once=lambda: self._post_once(body, key),
            on_attempt=on_attempt,
        )

    async def _post_once(self, body: bytes, key: str) -> _Outcome:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(self._secret, int(self._clock()), body),
            IDEMPOTENCY_HEADER: key,
        }
        try:
            # httpx's timeout bounds each socket operation; this bounds the whole attempt,
            # so a server that trickles its answer cannot hold it either.
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.post(self.url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return _Outcome(ok=False, error=f"timeout after {self._timeout_s:g} s")
        except httpx.HTTPError as exc:
            return _Outcome(ok=False, error=_error_text(exc, redact={self.url: self.target}))
        if response.is_success:
            return _Outcome(ok=True, status=response.status_code)
        detail = response.text.strip()[:200]
        return _Outcome(
            ok=False,
            status=response.status_code,
            error=f"HTTP {response.status_code}" + (f": {detail}" if detail else ""),
            retryable=webhook_status_retryable(response.status_code),
            retry_after=response.headers.get("Retry-After"),
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this notifier created it."""
        if self._owns_client:
            await self._client.aclose()


# --- FCM ------------------------------------------------------------------------------


def _push_once(
    fcm: FCMNotification, token: str, message: PushMessage, timeout_s: float
) -> _Outcome:
    """One FCM v1 request, in a worker thread. Uses pyfcm's payload, session and parsing.

    It does not call ``notify()``: pyfcm's ``send_request`` sleeps in the thread for as long
    as a ``Retry-After`` header says and then recurses without limit (and also recurses on an
    expired token), which would pin a thread and hide attempts. Here one call is one HTTP
    request; the caller's loop does the retrying, counting and recording.
    """
    key = push_idempotency_key(message, token)
    android, apns = push_configs(key)
    try:
        payload = fcm.parse_payload(
            fcm_token=token,
            notification_title=message.title,
            notification_body=message.body,
            # The app drops a push whose key it has shown (FCM itself has no message id to
            # deduplicate on: a retried send is a new message).
            data_payload={**message.data, "idempotency_key": key},
            android_config=android,
            apns_config=apns,
        )
        response = fcm.requests_session.post(fcm.fcm_end_point, data=payload, timeout=timeout_s)
    except requests.Timeout:
        return _Outcome(ok=False, error=f"timeout after {timeout_s:g} s")
    except Exception as exc:
        # Connection refused, DNS, or a credentials problem (pyfcm wraps a failed token
        # refresh in InvalidDataError): no answer from FCM about this message, so retry.
        return _Outcome(ok=False, error=_error_text(exc, redact={token: token_target(token)}))
    status = response.status_code
    if status == 401:
        # The cached bearer token may have expired: make this thread fetch a new one.
        fcm.thread_local.token_expiry = 0
    try:
        fcm.parse_response(response)  # raises pyfcm's error classes for non-200 answers
    except Exception as exc:
        return _Outcome(
            ok=False,
            status=status,
            error=_error_text(exc, redact={token: token_target(token)}),
            retryable=fcm_status_retryable(status),
            retry_after=response.headers.get("Retry-After"),
        )
    return _Outcome(ok=True, status=status)


def fixed_token_credentials(token: str) -> Credentials:
    """Credentials that always "refresh" to one ready access token, without asking Google.

    For a token broker outside the hub (``DOORSTEP_FCM_ACCESS_TOKEN``) and for tests: pyfcm
    calls ``credentials.refresh()`` before its first request on each thread, and a bare
    ``Credentials(token=...)`` cannot refresh. The expiry is an hour from each refresh
    (google-auth wants naive UTC).
    """

    def refresh(request: object, scopes: object) -> tuple[str, datetime]:
        return token, datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)

    return Credentials(token=token, refresh_handler=refresh)


class FcmNotifier:
    """FCM v1 pushes through pyfcm, off the event loop, retried with exponential backoff.

    pyfcm is configured so that this class, not pyfcm, owns every retry:

    - ``adapter=HTTPAdapter(max_retries=0)`` replaces pyfcm's default urllib3 ``Retry``
      (ten retries on 502/503 and on read errors, even for POST, with growing sleeps);
    - ``endpoint_base`` overrides the instance's ``FCM_END_POINT_BASE``
      (``https://fcm.googleapis.com/v1/projects`` by default); pyfcm appends
      ``/{project_id}/messages:send``.

    pyfcm refreshes the credentials (``credentials.refresh(...)``) whenever it builds a session
    for a thread and every 30 minutes after, so ``credentials`` must be refreshable; a
    service-account file is. Its ``project_id`` wins over ``project_id`` (pyfcm's rule).
    """

    def __init__(
        self,
        *,
        project_id: str,
        service_account_file: str | None = None,
        credentials: object | None = None,
        endpoint_base: str | None = None,
        timeout_s: float = 5.0,
        max_attempts: int = 3,
        base_delay_s: float = 0.5,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        # No I/O here: pyfcm reads the service-account file lazily, in a worker thread.
        # It raises AuthenticationError now if neither a file nor credentials is given.
        self._fcm = FCMNotification(
            service_account_file=service_account_file,
            project_id=project_id,
            credentials=credentials,
            adapter=HTTPAdapter(max_retries=0),
        )
        if endpoint_base is not None:
            self._fcm.FCM_END_POINT_BASE = endpoint_base.rstrip("/")
        self._timeout_s = timeout_s
        self._delays = backoff_delays(max_attempts, base_delay_s)
        self._clock = clock
        self._sleep = sleep
        self._executor = ThreadPoolExecutor(
            max_workers=FCM_WORKER_THREADS, thread_name_prefix="doorstep-fcm"
        )
        self._closed = False

    async def send(
        self, token: str, message: PushMessage, *, on_attempt: AttemptHook | None = None
    ) -> list[DeliveryAttempt]:
        """Push ``message`` to one device; retries 5xx, 429, 401 and timeouts, not 400/403/404.

        A 404 (UNREGISTERED) or 400 means the token is dead or the message invalid: it is a
        dead letter at once, and the caller should drop that token.
        """
        if not token:
            raise ValueError("an FCM registration token is required")
        if self._closed:
            raise RuntimeError("FcmNotifier is closed")
        return await _run_attempts(
            channel="fcm",
            target=token_target(token),
            delays=self._delays,
            clock=self._clock,
            sleep=self._sleep,
            attempt_once=lambda: self._attempt(token, message),
            on_attempt=on_attempt,
        )

    async def _attempt(self, token: str, message: PushMessage) -> _Outcome:
        loop = asyncio.get_running_loop()
        try:
            # The deadline is enforced here, on the loop: requests' own timeout applies per
            # socket operation and does not cover a token refresh with Google. On timeout the
            # thread is left to finish on its own (threads cannot be cancelled); a call still
            # queued behind busy threads is cancelled before it starts.
            async with asyncio.timeout(self._timeout_s):
                return await loop.run_in_executor(
                    self._executor, _push_once, self._fcm, token, message, self._timeout_s
                )
        except TimeoutError:
            return _Outcome(ok=False, error=f"timeout after {self._timeout_s:g} s")

    async def aclose(self) -> None:
        """Stop accepting sends; does not wait for a thread stuck on a dead endpoint."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
