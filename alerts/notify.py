"""The notifiers' delivery loop: attempts, backoff, Retry-After, and the record of each try.

Escalation decides *who* must hear about an incident and *when*; the notifiers only deliver,
and report every attempt as a ``DeliveryAttempt`` so that the hub can record it on the
incident and show failures to operators. Delivery never raises for a delivery problem: a
refused connection, a timeout or a 503 is an attempt with ``ok=False``; the final failed
attempt carries ``dead_letter=True`` so nothing fails silently.

Both shells, ``WebhookNotifier`` (``alerts/notify_webhook.py``) and ``FcmNotifier``
(``alerts/notify_fcm.py``), run their sends through ``run_attempts``, which puts the loop on
tenacity: the attempt count, the deterministic backoff schedule (``backoff_delays``) and a
server's ``Retry-After`` (honoured up to ``MAX_RETRY_AFTER_S``) decide the pauses. What they
send is built in ``alerts/notify_payloads.py``. None of them imports ``realtime`` (realtime
imports alerts, never the reverse).
"""

from __future__ import annotations

import email.utils
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

log = logging.getLogger("doorstep.notify")

# A server may ask for a longer pause with Retry-After; we honour it up to this bound only,
# because an SOS that waits minutes for a gateway is worse than a dead letter an operator sees.
MAX_RETRY_AFTER_S = 30.0
# Error texts end up on the incident and on the operator's console: enough to diagnose,
# never a whole HTML error page.
ERROR_TEXT_LIMIT = 300

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
class AttemptOutcome:
    """What one attempt produced, before it is numbered and timestamped."""

    ok: bool
    status: int | None = None
    error: str | None = None
    retryable: bool = True
    retry_after: str | None = None  # the raw Retry-After header, parsed with the clock


# --- pure parts ---------------------------------------------------------------------------


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


def error_text(exc: BaseException, *, redact: Mapping[str, str] | None = None) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    for secret, replacement in (redact or {}).items():
        if secret:
            text = text.replace(secret, replacement)
    return text[:ERROR_TEXT_LIMIT]


async def _call_hook(hook: AttemptHook, attempt: DeliveryAttempt) -> None:
    """Report an attempt; a failing hook is logged, because it must not stop the delivery."""
    try:
        result = hook(attempt)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("on_attempt hook failed for %s attempt %d", attempt.channel, attempt.attempt)


# --- the retry loop shared by both notifiers ----------------------------------------------


@dataclass(frozen=True)
class _Tried:
    """One finished attempt: its record and the raw outcome the next pause is read from."""

    record: DeliveryAttempt
    outcome: AttemptOutcome


async def run_attempts(
    *,
    channel: str,
    target: str,
    delays: list[float],
    clock: Clock,
    sleep: Sleep,
    attempt_once: Callable[[], Awaitable[AttemptOutcome]],
    on_attempt: AttemptHook | None,
) -> list[DeliveryAttempt]:
    """Try up to ``len(delays) + 1`` times; stop at the first success or permanent failure.

    tenacity runs the loop: it retries while the last attempt is neither ok nor a dead
    letter and sleeps (through ``sleep``) the scheduled backoff, lengthened by a server's
    Retry-After. An exception from ``attempt_once`` (a bug, or cancellation) propagates at
    once: only results are retried.
    """
    max_attempts = len(delays) + 1
    attempts: list[DeliveryAttempt] = []

    async def once() -> _Tried:
        number = len(attempts) + 1
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
        return _Tried(record=attempt, outcome=outcome)

    def pause(state: RetryCallState) -> float:
        # Called only before a retry, after the attempt numbered state.attempt_number.
        assert state.outcome is not None
        tried: _Tried = state.outcome.result()
        wanted = retry_after_s(tried.outcome.retry_after, clock())
        return delay_before_retry(delays[state.attempt_number - 1], wanted)

    async def sleep_for(seconds: float) -> None:
        await sleep(float(seconds))  # tenacity passes a float subclass; callers see a float

    # The retry predicate ends the loop on the record's own verdict (ok, or a dead letter,
    # which includes the last allowed attempt), so tenacity never asks for a pause, nor reads
    # the clock, after the final attempt; stop_after_attempt is the same bound, stated.
    retrying = AsyncRetrying(
        stop=stop_after_attempt(max_attempts),
        wait=pause,
        retry=retry_if_result(lambda tried: not (tried.record.ok or tried.record.dead_letter)),
        sleep=sleep_for,
    )
    await retrying(once)
    return attempts
