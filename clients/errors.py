"""Exceptions the SDK raises, so an app can tell "fix your setup" from "try again later".

Transient trouble (no network, a hub restarting, a refused frame that will be resent) is
never raised: the clients retry it themselves. What reaches the app needs a person or a code
change: a token to renew, a booking that does not exist, an SOS that could not be delivered
in time.
"""

from __future__ import annotations


class DoorstepError(Exception):
    """Base class of every SDK error."""


class AuthError(DoorstepError):
    """The hub refused the token (close 4401, HTTP 401) or its role (close 4403, HTTP 403).

    Reconnecting with the same token cannot help, so the client stops; a technician's
    buffered fixes are kept, and ``set_token()`` followed by ``start()`` resumes them.
    """

    def __init__(self, reason: str, *, forbidden: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.forbidden = forbidden


class NotFoundError(DoorstepError):
    """The booking (close 4404, HTTP 404) or incident does not exist."""


class RequestError(DoorstepError):
    """An HTTP call the hub answered with a definite refusal (4xx): retrying will not help.

    ``code`` is the stable error code from docs/protocol.md (``illegal_transition``,
    ``invalid_field``, ...), ``status`` the HTTP status.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class HubUnavailable(DoorstepError):
    """The hub could not be reached or answered 5xx/429: the same call may pass later.

    The clients retry this themselves where retrying is safe (fixes, SOS); an operator's
    ``ack``/``resolve`` raise it and leave the retry to the operator.
    """


class SosNotDelivered(DoorstepError):
    """No ``sos_ack`` and no HTTP 201/200 within the SOS deadline, over socket or HTTP.

    The SOS is *not* known to be safe. The app must tell the person (and may call ``sos()``
    again with the same ``sos_id``: the hub treats the same id as the same incident).
    """

    def __init__(self, sos_id: str, waited_s: float, last_error: str | None) -> None:
        detail = f"; last error: {last_error}" if last_error else ""
        super().__init__(f"SOS {sos_id} not acknowledged within {waited_s:.1f} s{detail}")
        self.sos_id = sos_id
        self.last_error = last_error


class NotConnectedError(DoorstepError):
    """An operation that needs the live socket (such as answering a ``check``) found it down."""
