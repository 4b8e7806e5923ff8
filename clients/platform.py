"""The platform backend's side of the hub's API: bookings and tokens, with the platform key.

In production the platform's own backend makes these calls (DESIGN.md: it creates bookings
and hands scoped tokens to the apps). The simulator, ``doorstep replay`` and ``doorstep demo``
play that part to set up their trips, so they go through exactly the endpoints an integrator
uses, and this small client is a starting point for one::

    async with PlatformClient("http://127.0.0.1:8765", platform_key) as platform:
        booking = await platform.create_booking(
            customer_id="c-1", technician_id="t-1", destination={"lat": 52.52, "lon": 13.405}
        )
        token = await platform.token("technician", "t-1")
        await platform.transition(booking["id"], "en_route")
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

from clients._http import http_client, json_or_raise

# The booking transitions the platform may ask for (POST /v1/bookings/{id}/<name>).
TRANSITIONS = frozenset({"assign", "en_route", "arrive", "start", "complete", "cancel"})


class PlatformClient:
    """Creates bookings, moves them along and mints tokens, authenticated by the platform key.

    Errors are the SDK's: ``AuthError`` for a wrong key, ``RequestError`` for a refusal
    (an illegal transition, a duplicate booking id), ``HubUnavailable`` for a 5xx.
    """

    def __init__(self, base_url: str, platform_key: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http_client(self.base_url, platform_key, timeout_s)

    async def token(
        self, role: str, sub: str, *, booking: str | None = None, ttl_s: int | None = None
    ) -> str:
        """A signed token for ``sub`` in ``role`` (customers need their ``booking``)."""
        body: dict[str, Any] = {"role": role, "sub": sub}
        if booking is not None:
            body["booking"] = booking
        if ttl_s is not None:
            body["ttl_s"] = ttl_s
        return str(json_or_raise(await self.http.post("/v1/tokens", json=body))["token"])

    async def create_booking(self, **body: Any) -> dict[str, Any]:
        """``POST /v1/bookings`` with ``body`` as documented there; returns the booking."""
        return dict(json_or_raise(await self.http.post("/v1/bookings", json=body)))

    async def booking(self, booking_id: str) -> dict[str, Any]:
        """The booking with its audit trail (``events``)."""
        return dict(json_or_raise(await self.http.get(f"/v1/bookings/{_segment(booking_id)}")))

    async def transition(
        self, booking_id: str, action: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``POST /v1/bookings/{id}/{action}`` (``assign`` needs ``{"technician_id"}``)."""
        if action not in TRANSITIONS:
            raise ValueError(f"unknown booking transition {action!r}; one of {sorted(TRANSITIONS)}")
        path = f"/v1/bookings/{_segment(booking_id)}/{action}"
        return dict(json_or_raise(await self.http.post(path, json=body or {})))

    async def track(
        self, technician_id: str, t_from: float | None = None, t_to: float | None = None
    ) -> dict[str, Any]:
        """The technician's location history as a GeoJSON Feature (Unix-second bounds)."""
        params = {k: v for k, v in (("from", t_from), ("to", t_to)) if v is not None}
        path = f"/v1/technicians/{_segment(technician_id)}/track"
        return dict(json_or_raise(await self.http.get(path, params=params)))

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _segment(value: str) -> str:
    return quote(value, safe="")
