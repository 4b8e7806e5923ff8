"""How the bus's background loops retry: tenacity with the bus's backoff (they are stopped
with ``realtime.aio.stop_tasks``, which does not trust a single cancellation).

The reader, the writer and the durable reader retry on their own (a Redis restart takes
about a second, a hub must not give up on it), and every hub hit by one outage waits a
different time, so that they do not all reconnect in lockstep. A loop that must stop is told
so (``closing``) as well as cancelled: on Python 3.11 redis-py can lose a cancellation inside
its connection code, so a cancelled loop may go on (see ``client.COMMAND_TIMEOUT_S``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tenacity import AsyncRetrying, RetryCallState, after_nothing, retry_if_exception_type


class Backoff:
    """A tenacity ``wait``: the first retry after about ``min_s``, each one after twice as
    long as the one before, up to ``max_s``, each drawn from 0.5 to 1.5 times that.

    Kept across attempts on purpose (not tenacity's attempt number): ``reset()`` once the
    loop works again, so that the next failure is a fresh outage and is retried soon.
    """

    def __init__(
        self, min_s: float, max_s: float, *, jitter: Callable[[], float] = random.random
    ) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.jitter = jitter
        self._next_s = min_s

    def reset(self) -> None:
        self._next_s = self.min_s

    def __call__(self, retry_state: RetryCallState | None = None) -> float:
        delay = self._next_s
        self._next_s = min(delay * 2, self.max_s)
        return delay * (0.5 + self.jitter())


def reconnecting(
    backoff: Backoff,
    *,
    retry_on: tuple[type[BaseException], ...],
    closing: Callable[[], bool],
    after: Callable[[RetryCallState], None] = after_nothing,
) -> AsyncRetrying:
    """Retry ``retry_on`` errors, waiting ``backoff``, for as long as not ``closing``.

    Any other error (and a cancellation) goes to the caller as it is. Once closing, the
    call returns None instead of retrying. ``after`` sees every failure that is retried or
    ends the call at closing (it logs them).
    """
    return AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        wait=backoff,
        stop=lambda _: closing(),
        after=after,
        retry_error_callback=lambda _: None,
    )


def failure_of(retry_state: RetryCallState) -> BaseException:
    """The exception the attempt just ended with (for ``after`` callbacks)."""
    assert retry_state.outcome is not None
    exc = retry_state.outcome.exception()
    assert exc is not None
    return exc
