"""The safety operator's client: open incidents, alerts and the fleet, kept current.

Example::

    async with OperatorClient("https://hub.example", token) as ops:
        async for event in ops:
            if isinstance(event, IncidentMessage) and event.reason == "raised":
                await ops.ack(event.incident["id"], note="calling the technician")
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from clients._client import BaseClient, TokenProvider
from clients._connection import Backoff
from clients._events import DEFAULT_EVENT_LIMIT
from clients._http import json_or_raise
from clients.errors import HubUnavailable
from realtime import protocol as wire

OperatorEvent = (
    wire.Snapshot | wire.IncidentMessage | wire.IncidentLocationMessage | wire.Alert | wire.Fleet
)

OPEN_INCIDENT = frozenset({"open", "acknowledged"})


class OperatorClient(BaseClient[OperatorEvent]):
    """The console's picture of the world, and the hands to act on it.

    State, rebuilt from the ``snapshot`` that opens every connection and updated by the live
    messages after it (the hub builds the snapshot and subscribes with no gap in between, so
    a reconnect loses nothing):

    - ``incidents``: open and acknowledged incidents by id (resolved or cancelled ones leave);
    - ``alerts``: unacknowledged safety alerts by id;
    - ``fleet``: online technicians by id (their latest position).

    Events: ``Snapshot``, ``IncidentMessage``, ``IncidentLocationMessage``, ``Alert``,
    ``Fleet``. Actions (``ack``, ``resolve``, ``ack_alert``) go over HTTP, not the socket:
    the answer is the updated incident or a precise error for *this* request, where an
    ``error`` frame could not be matched to the action that caused it.
    """

    _path = "/v1/ws/ops"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        ws_base_url: str | None = None,
        backoff: Backoff | None = None,
        http_timeout_s: float = 10.0,
        event_limit: int = DEFAULT_EVENT_LIMIT,
        token_provider: TokenProvider | None = None,
    ) -> None:
        super().__init__(
            base_url,
            token,
            ws_base_url=ws_base_url,
            backoff=backoff,
            http_timeout_s=http_timeout_s,
            event_limit=event_limit,
            token_provider=token_provider,
        )
        self.incidents: dict[str, dict[str, Any]] = {}
        self.alerts: dict[str, wire.Alert] = {}
        self.fleet: dict[str, wire.FleetEntry] = {}
        self._updated: dict[str, float] = {}  # newest ``updated_t`` seen per incident

    # ------------------------------------------------------------------ actions

    async def ack(self, incident_id: str, note: str | None = None) -> dict[str, Any]:
        """Take the incident (escalation stops); returns it as stored."""
        body = {"note": note} if note is not None else {}
        return await self._act(f"/v1/incidents/{quote(incident_id, safe='')}/ack", body)

    async def resolve(
        self, incident_id: str, outcome: str, note: str | None = None
    ) -> dict[str, Any]:
        """Close the incident with an outcome (``safe``, ``false_alarm``, ``help_dispatched``,
        ``police_called``, ``medical``, ``other``); returns it as stored."""
        body: dict[str, Any] = {"outcome": outcome}
        if note is not None:
            body["note"] = note
        return await self._act(f"/v1/incidents/{quote(incident_id, safe='')}/resolve", body)

    async def ack_alert(self, alert_id: str, note: str | None = None) -> dict[str, Any]:
        """Acknowledge a safety alert; returns it as stored."""
        body = {"note": note} if note is not None else {}
        alert = await self._post(f"/v1/alerts/{quote(alert_id, safe='')}/ack", body)
        if alert.get("status") != "open":
            self.alerts.pop(alert_id, None)
        return alert

    async def incident(self, incident_id: str) -> dict[str, Any]:
        """One incident in full (also closed ones), over HTTP."""
        response = await self._request("GET", f"/v1/incidents/{quote(incident_id, safe='')}")
        incident: dict[str, Any] = json_or_raise(response)
        return incident

    async def _act(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        incident = await self._post(path, body)
        self._upsert(incident)
        return incident

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = json_or_raise(await self._request("POST", path, json=body))
        return answer

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            # Not retried here: acting twice on an incident is the operator's decision.
            raise HubUnavailable(f"{type(exc).__name__}: {exc}") from None

    # ------------------------------------------------------------------ state

    async def _received(self, message: Any) -> None:
        if isinstance(message, wire.Snapshot):
            # A new connection: the snapshot is the whole truth, forget what went before
            # (incidents resolved while we were away are not in it).
            self.incidents = {str(i["id"]): i for i in message.incidents or ()}
            self._updated = {key: i.get("updated_t", 0.0) for key, i in self.incidents.items()}
            self.alerts = {}
            for raw in message.alerts or ():
                alert = msgspec.convert(raw, wire.Alert)
                if alert.id is not None:
                    self.alerts[alert.id] = alert
            self.fleet = {e.technician_id: e for e in message.fleet or () if e.online}
        elif isinstance(message, wire.IncidentMessage):
            self._upsert(message.incident)
        elif isinstance(message, wire.Alert):
            if message.id is not None:
                if message.status in (None, "open"):
                    self.alerts[message.id] = message
                else:
                    self.alerts.pop(message.id, None)
        elif isinstance(message, wire.Fleet):
            for entry in message.positions:
                if entry.online:
                    self.fleet[entry.technician_id] = entry
                else:
                    self.fleet.pop(entry.technician_id, None)
        elif not isinstance(message, wire.IncidentLocationMessage):
            return
        self._emit(message)

    def _upsert(self, incident: dict[str, Any]) -> None:
        incident_id = str(incident["id"])
        updated_t = float(incident.get("updated_t", 0.0))
        # An HTTP answer and the broadcasts of earlier changes can arrive in either order
        # (ack's broadcast after resolve's answer): never let an older picture win, nor
        # bring back an incident that is already closed.
        if self._updated.get(incident_id, float("-inf")) > updated_t:
            return
        self._updated[incident_id] = updated_t
        if incident.get("status") in OPEN_INCIDENT:
            self.incidents[incident_id] = incident
        else:
            self.incidents.pop(incident_id, None)
