"""The webhook notifier: signed JSON POSTs to one URL, the bridge to an SMS or voice gateway.

The body is signed with HMAC-SHA256 in a Stripe-style header (``alerts/notify_payloads.py``),
so receivers can reject replays; retries, backoff and the attempt records are the shared
delivery loop's (``alerts/notify.py``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

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
from alerts.notify_payloads import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    encode_body,
    signature_header,
)


def webhook_status_retryable(status: int) -> bool:
    """5xx, 408 and 429 may pass on a later try; any other non-2xx answer will not."""
    return status >= 500 or status in (408, 429)


def url_target(url: str) -> str:
    """Host (and port) of a URL: its path or query may carry a gateway's API key."""
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host


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
        return await run_attempts(
            channel="webhook",
            target=self.target,
            delays=self._delays,
            clock=self._clock,
            sleep=self._sleep,
            attempt_once=lambda: self._post_once(body, key),
            on_attempt=on_attempt,
        )

    async def _post_once(self, body: bytes, key: str) -> AttemptOutcome:
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
            return AttemptOutcome(ok=False, error=f"timeout after {self._timeout_s:g} s")
        except httpx.HTTPError as exc:
            return AttemptOutcome(ok=False, error=error_text(exc, redact={self.url: self.target}))
        if response.is_success:
            return AttemptOutcome(ok=True, status=response.status_code)
        detail = response.text.strip()[:200]
        return AttemptOutcome(
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
