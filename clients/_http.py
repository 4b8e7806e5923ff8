"""HTTP answers turned into SDK errors: retry what may pass later, raise what never will."""

from __future__ import annotations

from typing import Any

import httpx

from clients.errors import AuthError, HubUnavailable, NotFoundError, RequestError

# Worth another try: the hub is busy, restarting or could not store (503 sos_not_stored),
# or something between us and the hub timed out.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def http_client(base_url: str, token: str, timeout_s: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s
    )


def json_or_raise(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer; otherwise the matching SDK error."""
    if response.is_success:
        return response.json()
    status = response.status_code
    try:
        body = response.json()
        code, message = str(body.get("code", "")), str(body.get("message", ""))
    except (ValueError, AttributeError):
        code, message = "", response.text[:200]
    if status in RETRYABLE_STATUS:
        raise HubUnavailable(f"HTTP {status} {code}: {message}".strip())
    if status == 401:
        raise AuthError(message or "unauthorized")
    if status == 403:
        raise AuthError(message or "forbidden", forbidden=True)
    if status == 404:
        raise NotFoundError(message or "not found")
    raise RequestError(status, code or "http_error", message)
