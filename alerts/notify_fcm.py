"""The FCM notifier: FCM v1 pushes through pyfcm, off the event loop, under a deadline.

pyfcm is synchronous (requests), so every call runs in this notifier's own small thread pool,
under a deadline enforced on the event loop: a slow or dead push endpoint costs at most
``timeout_s`` per attempt and never blocks the loop or the threads the hub uses for storage.
Retries, backoff and the attempt records are the shared delivery loop's (``alerts/notify.py``);
the message and its idempotency key are built in ``alerts/notify_payloads.py``.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import requests
from google.oauth2.credentials import Credentials
from pyfcm import FCMNotification
from requests.adapters import HTTPAdapter

from alerts.notify import (
    AttemptHook,
    AttemptOutcome,
    Clock,
    DeliveryAttempt,
    Sleep,
    backoff_delays,
    error_text,
    run_attempts,
)
from alerts.notify_payloads import PushMessage, push_configs, push_idempotency_key

# Threads for pyfcm calls. Bounded, so a dead push endpoint holds at most this many threads
# (each for at most timeout_s); sends queued behind them hit their deadline and are cancelled
# before they start. A separate pool keeps the loop's default executor free for the hub.
FCM_WORKER_THREADS = 4
# FCM answers that condemn the message or the token itself (400 INVALID_ARGUMENT,
# 403 SENDER_ID_MISMATCH, 404 UNREGISTERED): the same request can never succeed.
FCM_PERMANENT_STATUSES = frozenset({400, 403, 404})


def fcm_status_retryable(status: int) -> bool:
    """Everything but FCM's verdicts on the message or token (401: a fresh token may fix it)."""
    return status not in FCM_PERMANENT_STATUSES


def token_target(token: str) -> str:
    """The last characters of an FCM token: enough to tell devices apart, useless to push."""
    return f"...{token[-6:]}"


def _push_once(
    fcm: FCMNotification, token: str, message: PushMessage, timeout_s: float
) -> AttemptOutcome:
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
        return AttemptOutcome(ok=False, error=f"timeout after {timeout_s:g} s")
    except Exception as exc:
        # Connection refused, DNS, or a credentials problem (pyfcm wraps a failed token
        # refresh in InvalidDataError): no answer from FCM about this message, so retry.
        return AttemptOutcome(ok=False, error=error_text(exc, redact={token: token_target(token)}))
    status = response.status_code
    if status == 401:
        # The cached bearer token may have expired: make this thread fetch a new one.
        fcm.thread_local.token_expiry = 0
    try:
        fcm.parse_response(response)  # raises pyfcm's error classes for non-200 answers
    except Exception as exc:
        return AttemptOutcome(
            ok=False,
            status=status,
            error=error_text(exc, redact={token: token_target(token)}),
            retryable=fcm_status_retryable(status),
            retry_after=response.headers.get("Retry-After"),
        )
    return AttemptOutcome(ok=True, status=status)


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
        return await run_attempts(
            channel="fcm",
            target=token_target(token),
            delays=self._delays,
            clock=self._clock,
            sleep=self._sleep,
            attempt_once=lambda: self._attempt(token, message),
            on_attempt=on_attempt,
        )

    async def _attempt(self, token: str, message: PushMessage) -> AttemptOutcome:
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
            return AttemptOutcome(ok=False, error=f"timeout after {self._timeout_s:g} s")

    async def aclose(self) -> None:
        """Stop accepting sends; does not wait for a thread stuck on a dead endpoint."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
